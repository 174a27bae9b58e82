#!/usr/bin/env bash
# The multi-instance benchmark (issue 12): a private redis-server, N
# bandsync instances on it (Redis mode) on free ports, and bandsync-bench
# spreading S sessions x M members over them (member i of session j on
# instance (i+j) mod N). One series: the relay floor, the shape spread
# over the N instances, the same shape on the first instance alone, the
# relay again. Every instance runs with TICK ms ticks, and the bench's
# members ask for CLIENT_TICK (-1: nothing, i.e. every tick; 0: none; or
# a slower rate in ms).
#
#   make multi-instance [N=3 S=625 M=8 TICK=100 CLIENT_TICK=-1 SCENARIO=fanout
#                        INTERVAL=250ms DURATION=10s BIN=bin SERVER=path ARGS=...]
#
# ARGS are passed to bandsync-bench last (e.g. ARGS="-json"); LOGDIR keeps
# the instances' and Redis's logs (they are deleted otherwise). The machine
# must allow 20,000 open files per process (ulimit -n): the bench holds one
# descriptor per client and the first instance all of them in the single
# run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${N:-3}" S="${S:-625}" M="${M:-8}" TICK="${TICK:-100}" CLIENT_TICK="${CLIENT_TICK:--1}"
SCENARIO="${SCENARIO:-fanout}" INTERVAL="${INTERVAL:-250ms}" DURATION="${DURATION:-10s}" BIN="${BIN:-$ROOT/bin}"
cd "$ROOT"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/bandsync ./cmd/bandsync-bench
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${LOGDIR:-}" ]; then mkdir -p "$LOGDIR" && cp "$work"/*.log "$LOGDIR"/; fi
	rm -rf "$work"
}
trap cleanup EXIT
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

urls=() spids=()
prefix="multi-$RANDOM:"
for i in $(seq "$N"); do
	port="$(free_port)"
	HOST=127.0.0.1 PORT="$port" REDIS_URL="redis://127.0.0.1:$rport" REDIS_KEY_PREFIX="$prefix" INSTANCE_ID="bench-$i" \
		SCROLL_TICK_INTERVAL="$TICK" LOG_LEVEL=warn "${SERVER:-$BIN/bandsync}" >"$work/server-$i.log" 2>&1 &
	pids+=($!) spids+=($!)
	urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
	for _ in $(seq 100); do
		curl -fsS "$u/health" 2>/dev/null | grep -q '"connected":true' && break
		sleep 0.1
	done
	curl -fsS "$u/health" | grep -q '"connected":true' || { echo "instance $u did not reach Redis" >&2; cat "$work"/server-*.log >&2; exit 1; }
done
join() { local IFS=,; echo "$*"; }
single=()
[ "$N" -gt 1 ] && single=(-single)
echo "=== $N instances on redis 127.0.0.1:$rport, ${S}x$M, ${TICK} ms ticks, client tickIntervalMs $CLIENT_TICK; $(uptime)"
"$BIN/bandsync-bench" -url "$(join "${urls[@]}")" -server-pid "$(join "${spids[@]}")" "${single[@]}" -baseline \
	-scenario "$SCENARIO" -sessions "$S" -members "$M" -tick-interval "${TICK}ms" -client-tick-ms "$CLIENT_TICK" \
	-interval "$INTERVAL" -duration "$DURATION" -timeout 4m ${ARGS:-} && status=0 || status=$?
for i in $(seq "$N"); do
	# What the instances had to say (warnings: dropped connections, Redis).
	if [ -s "$work/server-$i.log" ]; then
		echo "--- instance $i: $(wc -l <"$work/server-$i.log") log lines; the last 5:"
		tail -5 "$work/server-$i.log" | cut -c1-300
	fi
done
echo "=== done; $(uptime)"
exit $status
