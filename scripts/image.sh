#!/usr/bin/env bash
# Container images (`make image`), from the release binaries in dist/ (run
# `make release` first) and the build host's files; nothing is pulled.
#
#   bandsync:local        the server (deploy/docker/Dockerfile), also tagged
#                         bandsync:$VERSION
#   bandsync-lb:local     the compose stack's load balancer
#   bandsync-redis:local  the compose stack's Redis, from this host's
#                         redis-server (only with IMAGES including redis)
#
# Environment: IMAGES ("server lb redis"), ARCH (the host's), DIST (dist).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DIST="${DIST:-dist}"
ARCH="${ARCH:-$(go env GOARCH)}"
IMAGES="${IMAGES:-server lb redis}"
bin="$DIST/linux-$ARCH"
[[ -x "$bin/bandsync" ]] || {
	echo "!!! $bin/bandsync not found: run make release first" >&2
	exit 1
}
VERSION="$("$bin/bandsync" -version | awk '{print $2}')"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/bandsync-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT

for image in $IMAGES; do
	rm -rf "${ctx:?}"/* && mkdir -p "$ctx"
	case "$image" in
	server)
		cp "$bin/bandsync" "$ctx/"
		# The CA bundle is what rediss:// needs; an empty file keeps the
		# build working on a host without one (then only redis:// works).
		if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
			cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
		else
			echo "!!! /etc/ssl/certs/ca-certificates.crt not found: the image will not verify rediss:// servers" >&2
			: >"$ctx/ca-certificates.crt"
		fi
		docker build -q -f deploy/docker/Dockerfile --build-arg VERSION="$VERSION" -t bandsync:local -t "bandsync:${VERSION//[^A-Za-z0-9_.-]/-}" "$ctx"
		;;
	lb)
		cp "$bin/bandsync-lb" "$ctx/"
		docker build -q -f deploy/docker/Dockerfile.lb -t bandsync-lb:local "$ctx"
		;;
	redis)
		redis="$(command -v redis-server)" || {
			echo "!!! redis-server not found (apt-get install redis-server)" >&2
			exit 1
		}
		mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
		chmod 1777 "$ctx/rootfs/tmp"
		cp -L "$redis" "$ctx/rootfs/usr/bin/redis-server"
		# Every library the dynamic loader resolves, and the loader itself,
		# at the same path inside the image.
		ldd "$redis" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
			mkdir -p "$ctx/rootfs$(dirname "$lib")"
			cp -L "$lib" "$ctx/rootfs$lib"
		done
		docker build -q -f deploy/docker/Dockerfile.redis -t bandsync-redis:local "$ctx"
		;;
	*)
		echo "!!! unknown image '$image' (want server, lb or redis)" >&2
		exit 1
		;;
	esac
done
docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^bandsync(-lb|-redis)?:' || true
