#!/usr/bin/env bash
# What a slow Redis does to a playing band (issue 11's benchmark):
# a private redis-server, the server in Redis mode behind bandsync-bench's
# fault proxy, and fanout SxM measured twice through the same proxy: once
# undisturbed, once with Redis answering DELAY late for FOR in the middle of
# the window. Compare the rows "tick jitter" (|inter-arrival - tick|) and
# "seek latency" (with its missing count) of the two runs.
#
#   make redis-stall [S=50 M=8 DELAY=250ms FOR=4s BIN=bin SERVER=path]
#
# SERVER names a server binary to measure instead of the tree's (e.g. one
# built from an older commit, for a before/after comparison).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S="${S:-50}" M="${M:-8}" DELAY="${DELAY:-250ms}" FOR="${FOR:-4s}" BIN="${BIN:-$ROOT/bin}"
cd "$ROOT"
mkdir -p "$BIN"
go build -o "$BIN/" ./cmd/bandsync ./cmd/bandsync-bench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

run() { # $1: label, $2: delay
	local pport sport spid
	pport="$(free_port)" sport="$(free_port)"
	echo "=== $1"
	"$BIN/bandsync-bench" -url "http://127.0.0.1:$sport" -scenario fanout -sessions "$S" -members "$M" \
		-duration 12s -redis-proxy "127.0.0.1:$pport" -redis-upstream "127.0.0.1:$rport" \
		-redis-delay "$2" -redis-delay-after 4s -redis-delay-for "$FOR" -timeout 3m &
	local bench=$!
	sleep 0.5
	PORT="$sport" REDIS_URL="redis://127.0.0.1:$pport" REDIS_KEY_PREFIX="stall-$RANDOM:" LOG_LEVEL=warn \
		"${SERVER:-$BIN/bandsync}" >"$work/server-$1.log" 2>&1 &
	spid=$!
	pids+=("$spid")
	wait "$bench"
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
}
run undisturbed 0
run "redis-$DELAY-late" "$DELAY"
