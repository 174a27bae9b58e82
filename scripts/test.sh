#!/usr/bin/env bash
# BandSync's test command (`make test` runs this; so does .ci/run).
#
#   scripts/test.sh            every stage: lint, unit, fuzz, e2e, deploy
#   scripts/test.sh STAGE...   only the named stages (lint|unit|fuzz|e2e|deploy|precision)
#
# The e2e stage ends with a CI-sized run of the sync-precision harness
# (cmd/bandsync-precision: N(50,30) jitter and a 5 s stall, 20 s each); the
# `precision` stage, not run by default (`make precision`), is the full
# matrix of docs/sync.md, 60 s per scenario.
#
# Environment:
#   CI=true            missing tools (Node.js, npm, redis-server, redis-cli, iptables) are installed
#                      with apt-get (docker.io, docker-compose and prometheus
#                      for the deploy stage, whose dockerd it starts), and a
#                      tool that is still missing FAILS the
#                      run instead of skipping a suite
#   FUZZTIME=5s        time per fuzz target (scripts/fuzz-targets.txt)
#   BANDSYNC_E2E_RACE  1 (default) builds the e2e server binary with -race;
#                      0 builds it without
#   STATICCHECK_VERSION=v0.8.2  the staticcheck the lint stage runs
#   PRECISION_DURATION song length per scenario of the precision stage (60s)
#   PRECISION_BROWSER=1 the precision stage runs its "wifi" device in headless
#                      Chromium (the web app's SDK file) instead of Node
#   GO_TEST_TIMEOUT=4m go test's -timeout (a hung test fails instead of eating
#                      CI's time); E2E_TEST_TIMEOUT=180000 ms does the same for
#                      each Node test
#
# Every stage runs even when an earlier one failed; the exit status is non-zero
# when any stage failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

STATICCHECK_VERSION="${STATICCHECK_VERSION:-v0.8.2}"

# ---- stages -----------------------------------------------------------------

go_files() {
	local f
	if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$ROOT" ls-files -co --exclude-standard -- '*.go'
	else
		find . -name '*.go' -not -path '*/node_modules/*' -not -path './.git/*' | sed 's|^\./||'
	fi | grep -v -e '^node_modules/' -e '/node_modules/' | while IFS= read -r f; do
		[[ -f "$f" ]] && printf '%s\n' "$f"
	done
}

stage_lint() {
	section "lint: gofmt -l"
	local files unformatted
	mapfile -t files < <(go_files)
	info "${#files[@]} Go files"
	if ((${#files[@]} > 0)); then
		unformatted="$(gofmt -l "${files[@]}")" || return 1
		if [[ -n "$unformatted" ]]; then
			warn "these files are not gofmt-formatted (run: gofmt -w FILE):"
			printf '%s\n' "$unformatted" >&2
			return 1
		fi
	fi
	info "gofmt: clean"

	section "lint: go vet ./..."
	go vet ./... || return 1
	info "go vet: clean"

	section "lint: go mod tidy -diff"
	go mod tidy -diff || {
		warn "go.mod/go.sum are not tidy (run: go mod tidy)"
		return 1
	}
	info "go.mod: tidy"

	# Pinned, and run through the module proxy, so every machine checks
	# with the same rules without an install step.
	section "lint: staticcheck ${STATICCHECK_VERSION} ./..."
	go run "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}" ./... || return 1
	info "staticcheck: clean"
}

stage_unit() {
	section "unit: go test -race -count=1 ./..."
	go test -race -count=1 -timeout="${GO_TEST_TIMEOUT:-4m}" ./... || return 1
}

stage_fuzz() {
	local fuzztime="${FUZZTIME:-5s}" list="${FUZZ_TARGETS:-$ROOT/scripts/fuzz-targets.txt}"
	section "fuzz: ${fuzztime} per target (${list#"$ROOT"/})"
	[[ -f "$list" ]] || {
		warn "missing $list"
		return 1
	}
	local pkg name extra listed n=0 failed=0
	while read -r pkg name extra; do
		[[ -z "${pkg:-}" || "$pkg" == \#* ]] && continue
		if [[ -z "${name:-}" || -n "${extra:-}" ]]; then
			warn "bad line in fuzz-targets.txt (want 'package-path FuzzName'): $pkg $name $extra"
			failed=1
			continue
		fi
		pkg="./${pkg#./}"
		n=$((n + 1))
		# A listed target that does not exist is an error, not a silent no-op
		# (go test -fuzz with no match passes without fuzzing anything).
		if ! listed="$(go test -list "^${name}\$" "$pkg" 2>&1)"; then
			printf '%s\n' "$listed" >&2
			warn "cannot list fuzz targets of $pkg"
			failed=1
			continue
		fi
		if ! grep -qx "$name" <<<"$listed"; then
			warn "fuzz target $name listed in fuzz-targets.txt does not exist in $pkg"
			failed=1
			continue
		fi
		info "go test -run='^\$' -fuzz='^${name}\$' -fuzztime=${fuzztime} ${pkg}"
		fuzz_one "$pkg" "$name" "$fuzztime" || {
			warn "fuzz target $name in $pkg FAILED (the failing input is under $pkg/testdata/fuzz/$name/)"
			failed=1
		}
	done <"$list"
	((n > 0)) || {
		warn "no fuzz targets in $list"
		return 1
	}
	return "$failed"
}

# fuzz_one PKG NAME FUZZTIME fuzzes one target. Go 1.26's fuzz coordinator
# can report a bare "context deadline exceeded" as a failure when
# -fuzztime ends while a worker is mid-input (go.dev/issue/75804, fixed in
# Go 1.27): no input is written, nothing reproduces. Such a run, and only
# such a run, is tried once more; a written input or any other failure
# fails at once.
fuzz_one() {
	local pkg="$1" name="$2" fuzztime="$3" out try
	out="$(mktemp "${TMPDIR:-/tmp}/bandsync-fuzz.XXXXXX")"
	for try in 1 2; do
		if go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" 2>&1 | tee "$out"; then
			rm -f "$out"
			return 0
		fi
		if ((try == 1)) && grep -q 'context deadline exceeded' "$out" &&
			! grep -q -e 'Failing input written' -e 'panic:' "$out"; then
			warn "fuzz target $name: the Go 1.26 -fuzztime deadline race (go.dev/issue/75804), no input written; trying once more"
			continue
		fi
		break
	done
	rm -f "$out"
	return 1
}

stage_e2e() {
	section "e2e: Node.js suite (test/e2e)"
	local rc=0
	ensure_e2e_modules || rc=$?
	if ((rc == 2)); then
		skipped "e2e suite: Node.js >= 20 / npm not found (set CI=true to install them, or install Node.js 20)"
		return 0
	fi
	((rc == 0)) || return 1
	local e2e="$ROOT/test/e2e"

	# Build the server once for every test file (the harness builds it itself
	# when BANDSYNC_BIN is not set, e.g. when a file is run on its own).
	local bindir race=()
	bindir="$(mktemp -d "${TMPDIR:-/tmp}/bandsync-e2e-bin.XXXXXX")"
	add_cleanup "rm -rf '$bindir'"
	[[ "${BANDSYNC_E2E_RACE:-1}" != "0" ]] && race=(-race)
	info "go build ${race[*]} -o $bindir/bandsync ./cmd/bandsync"
	go build "${race[@]}" -o "$bindir/bandsync" ./cmd/bandsync || return 1

	local tests=()
	mapfile -t tests < <(cd "$e2e" && ls -1 ./*.test.mjs 2>/dev/null)
	# The browser tests need Debian's Chromium (installed under CI=true).
	local chromium_rc=0
	ensure_chromium || chromium_rc=$?
	if ((chromium_rc == 2)); then
		skipped "browser tests (browser*.test.mjs): /usr/bin/chromium not found (set CI=true to install it, or apt-get install chromium)"
		mapfile -t tests < <(printf '%s\n' "${tests[@]}" | grep -v '/browser[-a-z]*\.test\.mjs$')
	fi
	((${#tests[@]} > 0)) || {
		warn "no test/e2e/*.test.mjs files"
		return 1
	}
	info "go build -o $bindir/bandsync-norace ./cmd/bandsync (for the figures that measure the server)"
	go build -o "$bindir/bandsync-norace" ./cmd/bandsync || return 1
	local -x BANDSYNC_BIN="$bindir/bandsync" BANDSYNC_PLAIN_BIN="$bindir/bandsync-norace"

	# Two lanes, to keep CI within its 15 minutes. The files that mostly
	# wait (60 s of ticks to one follower, three phones for 60 s), then the
	# network faults at CI size, run beside the functional files; the files
	# whose figures are timing-sensitive (floods, browsers, the SDK's
	# agreement) run after those, and the precision run after both lanes.
	# (node --test sorts the files it is given, so each group is its own
	# run.) Measured: flood tick gaps max 24 ms of the 50 ms allowed with
	# the waiting lane beside them.
	local idle=() main=() late=() f
	for f in "${tests[@]}"; do
		case "$f" in
		./ticks.test.mjs | ./mobile-render.test.mjs) idle+=("$f") ;;
		./abuse*.test.mjs | ./browser*.test.mjs | ./sdk.test.mjs) late+=("$f") ;;
		*) main+=("$f") ;;
		esac
	done
	local tmo="${E2E_TEST_TIMEOUT:-180000}" lane_log lane_pid
	lane_log="$(mktemp "${TMPDIR:-/tmp}/bandsync-e2e-lane.XXXXXX.log")"
	add_cleanup "rm -f '$lane_log'"
	info "beside the functional files (output below when done): ${idle[*]} and the network faults"
	e2e_waiting_lane "$e2e" "$tmo" "${idle[@]}" >"$lane_log" 2>&1 &
	lane_pid=$!
	local rc=0 group
	for group in main late; do
		local -n files="$group"
		((${#files[@]} > 0)) || continue
		info "node --test --test-concurrency=1 --test-timeout=$tmo ${files[*]}"
		(cd "$e2e" && node --test --test-concurrency=1 --test-timeout="$tmo" "${files[@]}") || rc=1
	done
	wait "$lane_pid" || rc=1
	section "e2e: the waiting lane (${idle[*]}; network faults)"
	cat "$lane_log"
	((rc == 0)) || return 1

	# Sync precision through a jittery link and a stall, at CI size: devices
	# in their own Node processes behind embedded Toxiproxy links, scored
	# against the server's anchor (docs/sync.md). A server without -race, so
	# the race detector's overhead is not measured as network jitter.
	section "e2e: sync precision (CI size: jitter, stall; 20 s each)"
	go run ./cmd/bandsync-precision -bin "$bindir/bandsync-norace" -device "$e2e/precision/device.mjs" \
		-scenarios jitter,stall -duration 20s -warmup 5s -check || return 1
}

# e2e_waiting_lane E2E_DIR TIMEOUT_MS FILE...: the e2e files that mostly
# wait, then the network faults at CI size (internal/netfault,
# docs/redis.md): instances, Redis and SDK devices on hosts of their own
# (network namespaces); an instance cut off from Redis for 3 s, a device's
# link down for 3 s. They need the SDK devices' node_modules, hence this
# stage; the long versions and the venue Wi-Fi scenario are `make chaos`;
# the lab's own test (TestLabFaults) ran in the unit stage.
e2e_waiting_lane() {
	local e2e="$1" tmo="$2" rc=0
	shift 2
	if (($# > 0)); then
		info "node --test --test-concurrency=1 --test-timeout=$tmo $*"
		(cd "$e2e" && node --test --test-concurrency=1 --test-timeout="$tmo" "$@") || rc=1
	fi
	section "e2e: network faults (CI size: partition from Redis, link cut; ~15 s each)"
	if ((netfault_rc == 2)); then
		skipped "network-fault scenarios (internal/netfault): need root, ip and iptables"
		return "$rc"
	fi
	BANDSYNC_BIN="$BANDSYNC_PLAIN_BIN" go test -count=1 -tags netfault -timeout 5m \
		-run '^Test(PartitionFromRedis|LinkCut)$' ./internal/netfault/ || rc=1
	return "$rc"
}

stage_precision() {
	section "precision: the full sync-precision matrix (docs/sync.md)"
	local rc=0
	ensure_node || rc=$?
	if ((rc == 2)); then
		in_ci && return 1
		skipped "precision: Node.js >= 20 / npm not found"
		return 0
	fi
	((rc == 0)) || return 1
	local e2e="$ROOT/test/e2e"
	local want have=""
	want="$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)" || return 1
	[[ -f "$e2e/node_modules/.bandsync-lock.sha256" ]] && have="$(cat "$e2e/node_modules/.bandsync-lock.sha256")"
	if [[ "$want" != "$have" ]]; then
		(cd "$e2e" && npm ci --no-audit --no-fund) || return 1
		printf '%s\n' "$want" >"$e2e/node_modules/.bandsync-lock.sha256"
	fi
	local bindir
	bindir="$(mktemp -d "${TMPDIR:-/tmp}/bandsync-precision-bin.XXXXXX")"
	add_cleanup "rm -rf '$bindir'"
	go build -o "$bindir/bandsync" ./cmd/bandsync || return 1
	local browser=()
	if [[ -n "${PRECISION_BROWSER:-}" ]]; then
		ensure_chromium || return 1
		browser=(-wifi-browser)
	fi
	mkdir -p "$e2e/artifacts"
	go run ./cmd/bandsync-precision -bin "$bindir/bandsync" -device "$e2e/precision/device.mjs" "${browser[@]}" \
		-duration "${PRECISION_DURATION:-60s}" -json "$e2e/artifacts/precision.json" -check
}

# shellcheck source=scripts/deploy.sh
source "$ROOT/scripts/deploy.sh"

# ---- main -------------------------------------------------------------------

stages=("$@")
((${#stages[@]} > 0)) || stages=(lint unit fuzz e2e deploy)
for s in "${stages[@]}"; do
	case "$s" in
	lint | unit | fuzz | e2e | deploy | precision) ;;
	*) die "unknown stage '$s' (want lint, unit, fuzz, e2e, deploy or precision)" ;;
	esac
done

section "tools"
ensure_go
export GOFLAGS="${GOFLAGS:-}"
in_ci && info "CI=$CI: missing tools are installed, and a missing tool fails the run"

# One private redis-server for the whole run (never the machine's shared
# Redis): the Go integration tests in internal/redisstore and the e2e suite's
# redis.test.mjs use it through BANDSYNC_TEST_REDIS_URL; it is stopped on
# exit. The Cluster and Sentinel failover tests start their own topologies
# (internal/redisstore/redistest) with redis-server and redis-cli. Without
# them (outside CI) those tests skip loudly. The longer fault scenarios are
# `make chaos`.
if [[ " ${stages[*]} " == *" unit "* || " ${stages[*]} " == *" e2e "* ]]; then
	redis_rc=0
	ensure_redis || redis_rc=$?
	if ((redis_rc == 2)); then
		skipped "Redis tests (internal/redisstore, test/e2e/redis.test.mjs): redis-server not found (set CI=true to install it, or apt-get install redis-server)"
	fi
fi

# The network-fault tests (internal/netfault: the lab's own test in the unit
# stage, the scenarios in the e2e stage) need root, ip and iptables;
# installed under CI, where their absence is fatal.
netfault_rc=0
if [[ " ${stages[*]} " == *" unit "* || " ${stages[*]} " == *" e2e "* ]]; then
	ensure_netfault_tools || netfault_rc=$?
	if ((netfault_rc == 2)); then
		skipped "network-fault tests (internal/netfault): need root, ip and iptables (set CI=true to install the tools)"
	fi
fi

# Under CI, the Debian packages only the e2e and deploy stages need
# (Chromium, Docker, Prometheus) are installed in the background while the
# lint, unit and fuzz stages run: on a clean machine that takes minutes of
# downloads and unpacking off the critical path of a run that must stay
# within 15 minutes. The stages' own ensure_* checks still run and find
# them installed.
prefetch_pid=""
prefetch_log=""
if in_ci && command -v apt-get >/dev/null 2>&1; then
	later=()
	if [[ " ${stages[*]} " == *" e2e "* ]]; then
		[[ -x /usr/bin/chromium ]] || later+=(chromium)
	fi
	if [[ " ${stages[*]} " == *" deploy "* ]]; then
		command -v dockerd >/dev/null 2>&1 || later+=(docker.io)
		command -v docker-compose >/dev/null 2>&1 || later+=(docker-compose)
		command -v promtool >/dev/null 2>&1 || later+=(prometheus)
	fi
	if ((${#later[@]} > 0)); then
		prefetch_log="$(mktemp "${TMPDIR:-/tmp}/bandsync-apt.XXXXXX.log")"
		info "installing ${later[*]} in the background for the later stages (log: $prefetch_log)"
		(apt_install "${later[@]}") >"$prefetch_log" 2>&1 &
		prefetch_pid=$!
	fi
fi
await_prefetch() {
	[[ -n "$prefetch_pid" ]] || return 0
	info "waiting for the background install (log: $prefetch_log)"
	wait "$prefetch_pid" || warn "the background install failed: $(tail -3 "$prefetch_log")"
	prefetch_pid=""
}

failed=()
took=()
start=$SECONDS
for s in "${stages[@]}"; do
	t0=$SECONDS
	case "$s" in e2e | deploy) await_prefetch ;; esac
	if ! "stage_$s"; then
		failed+=("$s")
		warn "stage '$s' FAILED"
	fi
	took+=("$s $((SECONDS - t0))s")
done
# The whole run must stay within CI's 15 minutes: say where the time went.
printf '\n=== time per stage: %s ===\n' "$(IFS=,; echo "${took[*]}" | sed 's/,/, /g')"

if ((${#failed[@]} > 0)); then
	section "RESULT"
	printf '!!! FAILED stages: %s (of: %s) after %ss\n' "${failed[*]}" "${stages[*]}" "$((SECONDS - start))" >&2
	exit 1
fi
printf '\n=== make test: stages %s all passed in %ss ===\n' "${stages[*]}" "$((SECONDS - start))"
