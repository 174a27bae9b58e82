package httpapi

import "net/http"

// Readiness reports whether this instance should be sent new clients: nil
// when it should, otherwise an error saying why not (draining, say). It is
// called on every GET /readyz, so it must be cheap and safe for concurrent
// use.
type Readiness func() error

// probes answers the orchestrator's probes ahead of the per-IP rate limit:
// a kubelet or load balancer polls from one address forever, and a probe
// refused with 429 would take a healthy instance out of service.
//
//   - GET /livez: 200 while the process serves HTTP at all. Failing it means
//     "restart me", so it checks nothing else: a Redis outage must not get
//     every instance restarted at once.
//   - GET /readyz: 200 when Options.Ready says so, else 503 with the reason.
//     Not draining, listening, and a store that is reachable or whose
//     fallback is accepted.
func (a *api) probes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/livez":
			a.respond(w, r, http.StatusOK, probeBody{Status: "ok"})
		case "/readyz":
			if a.opts.Ready != nil {
				if err := a.opts.Ready(); err != nil {
					a.respond(w, r, http.StatusServiceUnavailable, probeBody{Status: "not ready", Reason: err.Error()})
					return
				}
			}
			a.respond(w, r, http.StatusOK, probeBody{Status: "ready"})
		default:
			next.ServeHTTP(w, r)
		}
	})
}

type probeBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}
