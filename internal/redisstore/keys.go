package redisstore

import "strings"

// keys builds every key and channel name. All of them start with the
// configured prefix (REDIS_KEY_PREFIX); a session's keys and channel carry
// its id in a {hash tag} so they live in one Cluster slot, which the
// commit script (one script touching them all) requires.
//
//	<p>{<session>}:state      hash: rec (record JSON), v (version), term, lastid
//	<p>{<session>}:log        stream: one entry per operation of each change
//	<p>{<session>}:events     pub/sub channel of the session's batches
//	<p>{<session>}:charts     hash: "<songId>:<version>" -> ChordPro text (charts.go)
//	<p>instance:<id>          string, PX 3 heartbeats: the instance is alive
//	<p>instance:<id>:sessions set: sessions the instance has followed
//	<p>instances              sorted set: instance -> last heartbeat (ms)
//	<p>reap:<id>              lock of the instance reaping dead instance <id>
//	<p>pid:<pid>              string, PX recovery window: a socket's session
//	<p>metrics:<id>           sorted set: an instance's samples by time
//	<p>metrics:instances      sorted set: instance -> last sample (ms)
type keys struct{ p string }

func (k keys) state(session string) string   { return k.p + "{" + session + "}:state" }
func (k keys) log(session string) string     { return k.p + "{" + session + "}:log" }
func (k keys) channel(session string) string { return k.p + "{" + session + "}:events" }
func (k keys) charts(session string) string  { return k.p + "{" + session + "}:charts" }
func (k keys) instance(id string) string     { return k.p + "instance:" + id }
func (k keys) instanceSessions(id string) string {
	return k.p + "instance:" + id + ":sessions"
}
func (k keys) instances() string        { return k.p + "instances" }
func (k keys) reap(id string) string    { return k.p + "reap:" + id }
func (k keys) pid(pid string) string    { return k.p + "pid:" + pid }
func (k keys) metrics(id string) string { return k.p + "metrics:" + id }
func (k keys) metricsInstances() string { return k.p + "metrics:instances" }
func (k keys) channelPrefix() string    { return k.p + "{" }
func (k keys) sessionOfChannel(ch string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, k.channelPrefix())
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "}:events")
	return id, ok
}
