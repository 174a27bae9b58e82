# shellcheck shell=bash
# The deploy stage of scripts/test.sh (`make deploy-test` runs only it):
# alert rules, Kubernetes manifests, the release build, the container image
# and the compose stack. Sourced by test.sh after lib.sh; do not run it.
#
# Every docker command is bounded by `timeout`, and everything it starts is
# removed on exit. DEPLOY_TIMEOUT (300 s) bounds each docker step.

stage_deploy() {
	local failed=0
	deploy_rules || failed=1
	deploy_manifests || failed=1
	deploy_release || failed=1
	if ((failed == 0)); then
		if command -v prometheus >/dev/null 2>&1; then
			deploy_prometheus || failed=1
		elif in_ci; then
			warn "prometheus not found (Debian's prometheus package provides it)"
			failed=1
		else
			skipped "the dashboard's queries on Prometheus: prometheus not found (apt-get install prometheus)"
		fi
	fi
	if ((failed == 0)); then
		local rc=0
		ensure_docker || rc=$?
		if ((rc == 2)); then
			skipped "container and compose tests: docker, docker-compose or a running dockerd not found (set CI=true to install and start them)"
		elif ((rc == 0)); then
			if deploy_image_build; then
				deploy_container || failed=1
				deploy_stack || failed=1
			else
				failed=1
			fi
		else
			failed=1
		fi
	fi
	return "$failed"
}

deploy_rules() {
	section "deploy: Prometheus alert rules (promtool)"
	local rc=0
	ensure_promtool || rc=$?
	if ((rc == 2)); then
		skipped "alert rule checks: promtool not found (set CI=true to install Debian's prometheus)"
		return 0
	fi
	((rc == 0)) || return 1
	(cd deploy/prometheus && promtool check rules bandsync-alerts.yml && promtool test rules bandsync-alerts.test.yml)
}

deploy_manifests() {
	section "deploy: Kubernetes manifests against the API types (deploy/k8s/check)"
	# Its own module (the Kubernetes API stays out of the server's go.mod),
	# so the lint stage's tidy and vet do not reach it: do them here.
	(cd deploy/k8s/check && go mod tidy -diff && go vet ./... && go test -count=1 ./...)
}

deploy_release() {
	section "deploy: make release"
	DIST="$ROOT/dist" bash scripts/release.sh || return 1
	local arch bin
	for arch in amd64 arm64; do
		bin="$ROOT/dist/linux-$arch/bandsync"
		[[ -x "$bin" ]] || {
			warn "no $bin"
			return 1
		}
		# Static, trimmed and for the right platform, as the toolchain recorded it.
		local m
		m="$(go version -m "$bin")" || return 1
		grep -q $'\tbuild\tCGO_ENABLED=0' <<<"$m" || { warn "$bin is not CGO_ENABLED=0"; return 1; }
		grep -q $'\tbuild\t-trimpath=true' <<<"$m" || { warn "$bin is not built with -trimpath"; return 1; }
		grep -q $'\tbuild\tGOARCH='"$arch" <<<"$m" || { warn "$bin is not GOARCH=$arch"; return 1; }
	done
	(cd "$ROOT/dist" && sha256sum --quiet -c SHA256SUMS) || { warn "dist/SHA256SUMS does not match"; return 1; }
	local want got
	want="$(git describe --tags --always --dirty 2>/dev/null || echo dev)"
	got="$("$ROOT/dist/linux-$(go env GOARCH)/bandsync" -version)" || return 1
	info "$got"
	[[ "$got" == "bandsync $want "* ]] || { warn "bandsync -version says '$got', want version $want"; return 1; }
}

deploy_image_build() {
	section "deploy: container images (FROM scratch)"
	# The stack's Redis image is made from this host's redis-server.
	if ! command -v redis-server >/dev/null 2>&1; then
		in_ci || { warn "redis-server not found (apt-get install redis-server)"; return 1; }
		apt_install redis-server || return 1
	fi
	timeout "${DEPLOY_TIMEOUT:-300}" bash scripts/image.sh || return 1
	local size user
	size="$(docker image inspect -f '{{.Size}}' bandsync:local)" || return 1
	info "bandsync:local is $((size / 1024 / 1024)) MiB"
	((size < 25 * 1000 * 1000)) || { warn "the image is $size bytes, over 25 MB"; return 1; }
	user="$(docker image inspect -f '{{.Config.User}}' bandsync:local)"
	[[ -n "$user" && "$user" != 0* && "$user" != root* ]] || { warn "the image runs as '$user'"; return 1; }
	# rediss:// needs the CA bundle inside the image.
	local cid listing
	cid="$(timeout 30 docker create bandsync:local)" || return 1
	listing="$(timeout 60 docker export "$cid" | tar -tvf -)"
	timeout 30 docker rm "$cid" >/dev/null
	awk '$6 == "etc/ssl/certs/ca-certificates.crt" && $3 > 1000 {found=1} END {exit !found}' <<<"$listing" || {
		warn "the image has no CA bundle at /etc/ssl/certs/ca-certificates.crt"
		return 1
	}
}

# deploy_container runs the image with no configuration at all, as
# docs/deploy.md does: healthy by its own HEALTHCHECK, /health with the
# version, a band joining with socket.io-client, and SIGTERM draining it.
deploy_container() {
	section "deploy: the image serves a band and drains on SIGTERM"
	ensure_e2e_modules || return 1
	local name="bandsync-ct-$$-$RANDOM" t="${DEPLOY_TIMEOUT:-300}"
	add_cleanup "timeout 60 docker rm -f $name >/dev/null 2>&1"
	timeout "$t" docker run -d --name "$name" --health-interval=1s -p 127.0.0.1::3001 bandsync:local >/dev/null || return 1
	local addr i status=""
	addr="$(timeout 30 docker port "$name" 3001/tcp | head -1)"
	for i in $(seq 1 60); do
		status="$(timeout 10 docker inspect -f '{{.State.Health.Status}}' "$name")"
		[[ "$status" == healthy ]] && break
		sleep 0.5
	done
	[[ "$status" == healthy ]] || { warn "container health: '$status'"; docker logs "$name" 2>&1 | tail -20 >&2; return 1; }
	info "HEALTHCHECK (bandsync -healthcheck): $status"
	local health version
	health="$(curl -fsS --max-time 5 "http://$addr/health")" || return 1
	version="$("$ROOT/dist/linux-$(go env GOARCH)/bandsync" -version | awk '{print $2}')"
	info "/health: $health"
	[[ "$health" == *'"status":"healthy"'* && "$health" == *"\"version\":\"$version\""* ]] || { warn "/health does not say healthy, version $version"; return 1; }

	local out
	out="$(mktemp "${TMPDIR:-/tmp}/bandsync-ct.XXXXXX")"
	add_cleanup "rm -f '$out'"
	(cd "$ROOT/test/e2e" && URL="http://$addr" timeout 60 node container-smoke.mjs) >"$out" 2>&1 &
	local client=$!
	for i in $(seq 1 100); do
		grep -q '^joined' "$out" && break
		kill -0 "$client" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^joined' "$out" || { cat "$out" >&2; warn "the client did not join"; return 1; }
	local start=$SECONDS code
	timeout 60 docker stop -t 15 "$name" >/dev/null || return 1
	code="$(docker inspect -f '{{.State.ExitCode}}' "$name")"
	info "docker stop (SIGTERM): exit code $code after $((SECONDS - start)) s"
	wait "$client" || { cat "$out" >&2; warn "the client did not see the drain close its socket"; return 1; }
	cat "$out"
	[[ "$code" == 0 ]] || { warn "exit code $code after SIGTERM, want 0"; docker logs "$name" 2>&1 | tail -20 >&2; return 1; }
	((SECONDS - start <= 11)) || { warn "the drain took $((SECONDS - start)) s, over SHUTDOWN_TIMEOUT_MS"; return 1; }
	docker logs "$name" 2>&1 | grep -q "\"version\":\"$version\"" || { warn "the start-up log does not name version $version"; return 1; }
}

# deploy_stack brings up deploy/compose (Redis, three instances, the
# balancer) under its own project name and port, and runs the smoke test:
# a band across the instances, one instance killed, then another stopped as
# a rolling upgrade stops it, their clients recovered on the others.
deploy_stack() {
	section "deploy: compose stack (Redis, 3 instances, load balancer)"
	ensure_e2e_modules || return 1
	local project="bandsyncci$$" file="$ROOT/deploy/compose/docker-compose.yml" t="${DEPLOY_TIMEOUT:-300}"
	local dc=(docker-compose -p "$project" -f "$file")
	add_cleanup "BANDSYNC_PORT= timeout 120 ${dc[*]} down -t 2 >/dev/null 2>&1"
	BANDSYNC_PORT= timeout "$t" "${dc[@]}" up -d || return 1
	local addr
	addr="$(BANDSYNC_PORT= timeout 30 "${dc[@]}" port lb 8080)" || return 1
	info "balancer at $addr"
	if ! (cd "$ROOT/test/e2e" && LB_URL="http://$addr" KILL_CMD="BANDSYNC_PORT= timeout 60 ${dc[*]} kill bandsync-2" \
		DRAIN_CMD="BANDSYNC_PORT= timeout 60 ${dc[*]} stop -t 15 bandsync-1" timeout 180 node stack-smoke.mjs); then
		BANDSYNC_PORT= timeout 30 "${dc[@]}" logs --tail=30 >&2 || true
		return 1
	fi
}

# deploy_prometheus scrapes a real server with a real Prometheus (Debian's),
# with the alert rules loaded, and runs every dashboard query on it.
deploy_prometheus() {
	section "deploy: the dashboard's queries on Prometheus scraping a server"
	ensure_node || return 1
	local dir bin="$ROOT/dist/linux-$(go env GOARCH)/bandsync" sport pport attempt
	dir="$(mktemp -d "${TMPDIR:-/tmp}/bandsync-prom.XXXXXX")"
	add_cleanup "rm -rf '$dir'"
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		sport=$((20000 + RANDOM % 40000))
		pport=$((20000 + RANDOM % 40000))
		_port_in_use "$sport" || _port_in_use "$pport" || break
	done
	(cd "$dir" && HOST=127.0.0.1 PORT="$sport" METRICS_INTERVAL=1000 exec "$bin") >"$dir/bandsync.log" 2>&1 &
	local spid=$!
	add_cleanup "kill $spid 2>/dev/null"
	cat >"$dir/prometheus.yml" <<-YAML
		global: { scrape_interval: 1s, evaluation_interval: 1s }
		rule_files: ["$ROOT/deploy/prometheus/bandsync-alerts.yml"]
		scrape_configs:
		  - job_name: bandsync
		    static_configs: [{ targets: ["127.0.0.1:$sport"] }]
	YAML
	prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address="127.0.0.1:$pport" >"$dir/prometheus.log" 2>&1 &
	local ppid=$!
	add_cleanup "kill $ppid 2>/dev/null"
	local i up=""
	for i in $(seq 1 60); do
		up="$(curl -fsS --max-time 2 "http://127.0.0.1:$pport/api/v1/query?query=up%7Bjob%3D%22bandsync%22%7D" 2>/dev/null || true)"
		[[ "$up" == *'"value":['*'"1"]'* ]] && break
		sleep 0.5
	done
	[[ "$up" == *'"value":['*'"1"]'* ]] || {
		warn "Prometheus did not scrape the server: $up"
		tail -5 "$dir/prometheus.log" "$dir/bandsync.log" >&2
		return 1
	}
	info "Prometheus $pport scrapes bandsync $sport (up == 1)"
	sleep 3 # a few scrapes, so rate() has two points
	PROM_URL="http://127.0.0.1:$pport" timeout 60 node "$ROOT/deploy/prometheus/check-dashboard.mjs" || return 1
	kill "$ppid" "$spid" 2>/dev/null
	wait "$ppid" "$spid" 2>/dev/null || true
}
