# shellcheck shell=bash
# Shared helpers for BandSync's test scripts. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Conventions: every ensure_* function returns 0 when the tool is usable,
# returns 2 when it is missing outside CI (the caller prints a SKIPPED line and
# moves on), and exits the whole script with status 1 when it is missing while
# CI is set (CI must never silently skip a suite).

# ---- output ---------------------------------------------------------------

section() {
	printf '\n==================== %s ====================\n' "$*"
}

info() { printf '>>> %s\n' "$*"; }

warn() { printf '!!! %s\n' "$*" >&2; }

die() {
	printf '\n!!! FAILED: %s\n' "$*" >&2
	exit 1
}

skipped() {
	printf '\n'
	printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
	printf '!!! SKIPPED: %s\n' "$*"
	printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
	printf '\n'
}

in_ci() { [[ -n "${CI:-}" && "${CI}" != "false" && "${CI}" != "0" ]]; }

# ---- cleanup stack ----------------------------------------------------------
# add_cleanup CMD... registers a command that runs (last registered first)
# when the script exits, however it exits.

_BANDSYNC_CLEANUPS=()

_bandsync_run_cleanups() {
	local rc=$? i
	for ((i = ${#_BANDSYNC_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${_BANDSYNC_CLEANUPS[i]}" || true
	done
	_BANDSYNC_CLEANUPS=()
	return "$rc"
}

add_cleanup() {
	_BANDSYNC_CLEANUPS+=("$*")
	trap _bandsync_run_cleanups EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# ---- apt --------------------------------------------------------------------

_BANDSYNC_APT_UPDATED=""

# apt_install PKG... installs Debian packages (CI only; the caller decides).
apt_install() {
	command -v apt-get >/dev/null 2>&1 || {
		warn "apt-get not available; cannot install $*"
		return 1
	}
	local sudo=""
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || {
			warn "not root and no sudo; cannot install $*"
			return 1
		}
		sudo="sudo"
	fi
	if [[ -z "$_BANDSYNC_APT_UPDATED" ]]; then
		info "apt-get update"
		DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq || return 1
		_BANDSYNC_APT_UPDATED=1
	fi
	info "apt-get install -y $*"
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# ---- Go ---------------------------------------------------------------------

ensure_go() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH (Go 1.26 is required)"
	info "$(go version)"
}

# ---- Node.js 20+ and npm ------------------------------------------------------

_node_ok() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 1
	local major
	major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null)" || return 1
	[[ "$major" =~ ^[0-9]+$ ]] && ((major >= 20))
}

ensure_node() {
	if ! _node_ok && in_ci; then
		warn "Node.js >= 20 and npm not found; installing Debian's nodejs and npm"
		apt_install nodejs npm || true
	fi
	if ! _node_ok; then
		if in_ci; then
			die "Node.js >= 20 and npm are required for the e2e suite (CI is set, so this is fatal)"
		fi
		return 2
	fi
	info "node $(node --version), npm $(npm --version)"
}

# ensure_e2e_modules makes Node usable and installs test/e2e's pinned npm
# packages (npm ci) when package-lock.json changed since the last install.
# Returns 2 like ensure_node when Node is missing outside CI.
ensure_e2e_modules() {
	local rc=0
	ensure_node || rc=$?
	((rc == 0)) || return "$rc"
	local e2e="$ROOT/test/e2e" want have=""
	want="$(sha256sum "$e2e/package-lock.json" | cut -d' ' -f1)" || return 1
	[[ -f "$e2e/node_modules/.bandsync-lock.sha256" ]] && have="$(cat "$e2e/node_modules/.bandsync-lock.sha256")"
	if [[ "$want" == "$have" ]]; then
		info "test/e2e/node_modules is up to date with package-lock.json"
	else
		info "npm ci (test/e2e)"
		(cd "$e2e" && npm ci --no-audit --no-fund) || return 1
		printf '%s\n' "$want" >"$e2e/node_modules/.bandsync-lock.sha256"
	fi
}

# ---- Redis (a PRIVATE server; never the machine's shared 127.0.0.1:6379) ----

_have_redis() { command -v redis-server >/dev/null 2>&1; }

# _port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
_port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# _redis_ping PORT: true when a Redis server answers PING on 127.0.0.1:PORT.
_redis_ping() {
	local reply=""
	{
		exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
		printf 'PING\r\n' >&3
		IFS= read -r -t 1 reply <&3 || true
		exec 3>&-
	} 2>/dev/null
	[[ "$reply" == "+PONG"* ]]
}

# ensure_redis starts a private, throw-away redis-server on a free port,
# exports BANDSYNC_TEST_REDIS_URL=redis://127.0.0.1:PORT/0, and stops it when
# the script exits. Returns 2 when redis-server is missing outside CI.
ensure_redis() {
	if [[ -n "${BANDSYNC_TEST_REDIS_URL:-}" ]]; then
		info "using BANDSYNC_TEST_REDIS_URL=$BANDSYNC_TEST_REDIS_URL"
		return 0
	fi
	if ! _have_redis && in_ci; then
		warn "redis-server not found; installing Debian's redis-server"
		apt_install redis-server || true
	fi
	if ! _have_redis; then
		if in_ci; then
			die "redis-server is required (CI is set, so this is fatal)"
		fi
		return 2
	fi
	# The Cluster failover tests (internal/redisstore/failover_test.go) build
	# their cluster with redis-cli --cluster create; Sentinel runs as
	# redis-server --sentinel, so no redis-sentinel package is needed.
	if ! command -v redis-cli >/dev/null 2>&1; then
		if in_ci; then
			warn "redis-cli not found; installing Debian's redis-tools"
			apt_install redis-tools || true
			command -v redis-cli >/dev/null 2>&1 || die "redis-cli is required for the Redis Cluster tests (CI is set, so this is fatal)"
		else
			skipped "Redis Cluster tests: redis-cli not found (set CI=true to install it, or apt-get install redis-tools)"
		fi
	fi

	local dir port attempt pid=""
	dir="$(mktemp -d "${TMPDIR:-/tmp}/bandsync-redis.XXXXXX")"
	add_cleanup "_stop_private_redis '$dir'"
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		port=$((20000 + RANDOM % 40000))
		[[ "$port" == 6379 ]] && continue
		_port_in_use "$port" && continue
		redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
			--daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
			--logfile "$dir/redis.log" >/dev/null 2>&1 || continue
		local i
		for i in $(seq 1 50); do
			if _redis_ping "$port"; then
				pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
				break 2
			fi
			sleep 0.1
		done
		# It never answered (port taken between the check and the bind?): stop it.
		_stop_private_redis "$dir" keep
	done
	[[ -n "$pid" ]] || die "could not start a private redis-server (log: $(tail -5 "$dir/redis.log" 2>/dev/null))"
	export BANDSYNC_TEST_REDIS_URL="redis://127.0.0.1:${port}/0"
	info "private redis-server (pid $pid) at $BANDSYNC_TEST_REDIS_URL"
}

# ensure_netfault_tools makes sure the network-fault tests
# (internal/netfault) can build their hosts: root, ip (iproute2) and
# iptables. Under CI the tools are installed and anything missing is fatal
# (the tests themselves also fail under CI rather than skip); elsewhere
# returns 2 and the tests skip with a SKIPPED line.
ensure_netfault_tools() {
	if in_ci; then
		command -v ip >/dev/null 2>&1 || apt_install iproute2 || true
		command -v iptables >/dev/null 2>&1 || apt_install iptables || true
	fi
	if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null 2>&1 || ! command -v iptables >/dev/null 2>&1; then
		in_ci && die "the network-fault tests need root, ip and iptables (CI is set, so this is fatal)"
		return 2
	fi
}

_stop_private_redis() {
	local dir="$1" keep="${2:-}" pid
	if [[ -f "$dir/redis.pid" ]]; then
		pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
		if [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; then
			local i
			for i in $(seq 1 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$dir/redis.pid"
	fi
	[[ -n "$keep" ]] || rm -rf "$dir"
}

# ---- Chromium (Debian's, driven by playwright-core in test/e2e/browser.test.mjs)

ensure_chromium() {
	if [[ ! -x /usr/bin/chromium ]] && in_ci; then
		warn "/usr/bin/chromium not found; installing Debian's chromium"
		apt_install chromium || true
	fi
	if [[ ! -x /usr/bin/chromium ]]; then
		if in_ci; then
			die "/usr/bin/chromium is required for the browser tests (CI is set, so this is fatal)"
		fi
		return 2
	fi
	info "$(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
}

# ---- Docker (docker.io's dockerd and Debian's docker-compose) ----------------

# ensure_docker makes `docker` and `docker-compose` usable: under CI it
# installs docker.io and docker-compose when missing and starts dockerd when
# no daemon answers (stopping it again when the script exits). Outside CI a
# missing tool or daemon returns 2 (the caller skips loudly).
ensure_docker() {
	if in_ci; then
		local pkgs=()
		command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
		command -v docker-compose >/dev/null 2>&1 || pkgs+=(docker-compose)
		if ((${#pkgs[@]} > 0)); then
			warn "${pkgs[*]} not found; installing from Debian"
			apt_install "${pkgs[@]}" || true
		fi
	fi
	if ! command -v docker >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1; then
		in_ci && die "docker and docker-compose are required (CI is set, so this is fatal)"
		return 2
	fi
	if ! timeout 10 docker info >/dev/null 2>&1; then
		if ! in_ci; then
			warn "no Docker daemon answers (start one with: dockerd &)"
			return 2
		fi
		command -v dockerd >/dev/null 2>&1 || die "dockerd not found (CI is set, so this is fatal)"
		local log
		log="$(mktemp "${TMPDIR:-/tmp}/bandsync-dockerd.XXXXXX.log")"
		info "starting dockerd (log: $log)"
		dockerd >"$log" 2>&1 &
		local pid=$!
		add_cleanup "_stop_dockerd $pid"
		local i
		for i in $(seq 1 60); do
			timeout 5 docker info >/dev/null 2>&1 && break
			kill -0 "$pid" 2>/dev/null || die "dockerd exited: $(tail -5 "$log")"
			sleep 0.5
		done
		timeout 5 docker info >/dev/null 2>&1 || die "dockerd did not answer within 30 s: $(tail -5 "$log")"
	fi
	info "docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(docker-compose version --short 2>/dev/null || echo docker-compose)"
}

_stop_dockerd() {
	local pid="$1" i
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}

# ---- promtool (Debian's prometheus package) ---------------------------------

ensure_promtool() {
	if ! command -v promtool >/dev/null 2>&1 && in_ci; then
		warn "promtool not found; installing Debian's prometheus"
		apt_install prometheus || true
	fi
	if ! command -v promtool >/dev/null 2>&1; then
		in_ci && die "promtool is required to check the alert rules (CI is set, so this is fatal)"
		return 2
	fi
	info "$(promtool --version 2>&1 | head -1)"
}
