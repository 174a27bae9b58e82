#!/usr/bin/env bash
# The fan-out figures of two builds, measured side by side in one series
# (issue 11: "every figure still holds, measured side by side with the
# commit before"): for memory and Redis mode, and for each shape, the
# before build and this tree's build run alternately against a fresh
# server with the same bench (this tree's), at 100 ms ticks.
#
#   make side-by-side [BEFORE=01f532a SHAPES="50x8 625x8" MODES="memory redis" ROUNDS=1 RT=1]
#
# RT=1 runs servers and bench at SCHED_FIFO (root) in memory mode at the
# 50x8 shape only: on a machine shared with other work, its noise then
# stays out of the figures. At 625x8 the two FIFO processes fill both
# cores of a 2-core machine, the kernel's softirq threads starve behind
# them and the run livelocks (seen twice); Redis mode needs a redis-server
# as favoured as the others, and one put in SCHED_FIFO hung too. Those
# runs stay at normal priority, on a machine otherwise idle. Results go to
# stdout (the bench's tables) and a summary line per run at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BEFORE="${BEFORE:-01f532a}" SHAPES="${SHAPES:-50x8 625x8}" MODES="${MODES:-memory redis}" ROUNDS="${ROUNDS:-1}"
cd "$ROOT"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rt=()
[[ -n "${RT:-}" ]] && rt=(chrt -f 10)

mkdir -p "$work/before" "$work/after"
git archive "$BEFORE" | tar -x -C "$work/before"
(cd "$work/before" && go build -o "$work/bandsync-before" ./cmd/bandsync)
go build -o "$work/bandsync-after" ./cmd/bandsync
go build -o "$work/bandsync-bench" ./cmd/bandsync-bench
echo "before: $(git rev-parse --short "$BEFORE")  after: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')  $(uptime)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

summary=()
run() { # $1 build, $2 mode, $3 sessions, $4 members
	local sport spid env=(PORT= HOST=127.0.0.1 LOG_LEVEL=warn SCROLL_TICK_INTERVAL=100)
	sport="$(free_port)"
	env[0]="PORT=$sport"
	[[ "$2" == redis ]] && env+=("REDIS_URL=redis://127.0.0.1:$rport" "REDIS_KEY_PREFIX=sbs-$RANDOM:")
	local prio=()
	[[ "$2" == memory && "$3" -le 50 ]] && prio=("${rt[@]}")
	env "${env[@]}" "${prio[@]}" "$work/bandsync-$1" >"$work/server-$1-$2-$3x$4.log" 2>&1 &
	spid=$!
	pids+=("$spid")
	for _ in $(seq 100); do curl -fs "http://127.0.0.1:$sport/livez" >/dev/null 2>&1 && break; sleep 0.1; done
	echo "=== $1 $2 $3x$4 ($(uptime | sed 's/.*load/load/'))"
	local out="$work/bench-$1-$2-$3x$4.txt"
	"${prio[@]}" "$work/bandsync-bench" -url "http://127.0.0.1:$sport" -server-pid "$spid" -scenario fanout \
		-sessions "$3" -members "$4" -tick-interval 100ms -duration 10s -timeout 3m | tee "$out" || true
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	summary+=("$1 $2 $3x$4: $(grep -E '^fanout +server .*seek latency' "$out" | head -1 | tr -s ' ') || $(grep -E '^fanout +server .*tick lag' "$out" | head -1 | tr -s ' ')")
}
for ((r = 1; r <= ROUNDS; r++)); do
	for mode in $MODES; do
		for shape in $SHAPES; do
			run before "$mode" "${shape%x*}" "${shape#*x}"
			run after "$mode" "${shape%x*}" "${shape#*x}"
		done
	done
done
echo
echo "=== summary (seek latency row || tick lag row)"
printf '%s\n' "${summary[@]}"
