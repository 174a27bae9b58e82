#!/usr/bin/env bash
# Release build (`make release`): static, trimmed binaries of every command
# for each platform in PLATFORMS, stamped with the version, commit and commit
# date, and a SHA256SUMS over them.
#
#   dist/linux-amd64/{bandsync,bandsync-bench,bandsync-lb}
#   dist/linux-arm64/...
#   dist/SHA256SUMS
#
# Environment: VERSION (default: git describe), PLATFORMS ("linux/amd64
# linux/arm64"), DIST (dist), CMDS (the commands an operator runs; test
# harnesses such as bandsync-precision stay out).
#
# The date stamped is the commit's, not the clock's, so building the same
# commit twice gives byte-identical binaries and the same checksums.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
COMMIT="${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
DATE="${DATE:-$(git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
DIST="${DIST:-dist}"
CMDS="${CMDS:-bandsync bandsync-bench bandsync-lb}"

ldflags="-s -w -X main.version=$VERSION -X main.commit=$COMMIT -X main.date=$DATE"
rm -rf "$DIST"
mkdir -p "$DIST"
for p in $PLATFORMS; do
	os="${p%/*}" arch="${p#*/}"
	out="$DIST/$os-$arch"
	mkdir -p "$out"
	echo ">>> $p -> $out/ ($VERSION)"
	pkgs=()
	for c in $CMDS; do pkgs+=("./cmd/$c"); done
	CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -buildvcs=false \
		-ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
done
(cd "$DIST" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum >SHA256SUMS)
cat "$DIST/SHA256SUMS"
