#!/usr/bin/env bash
# Builds the asset-worker image without a container registry: the runtime stage of
# deploy/Dockerfile (Debian bookworm slim + ca-certificates, the binary, USER 65532, the same
# ENTRYPOINT/CMD/EXPOSE) on a root filesystem made by mmdebstrap from Debian's own mirror,
# committed with buildah into local container storage (podman sees it).
#
#   deploy/image.sh                              # the release binary (cargo build --release)
#   deploy/image.sh --binary PATH [--tag TAG]    # a binary already built (the tests: debug)
#
# The binary goes in with its debug info split off: the image gets `objcopy --strip-debug`
# (function names kept for backtraces, line tables gone) with a debuglink, and the symbols
# stay under target/image/TAG/ as asset-worker.debug (a build artifact, for addr2line/gdb on a
# backtrace from production). Sizes: deploy/README.md.
#
# The Debian root is cached at target/image/bookworm-slim.tar and rebuilt when older than
# IMAGE_ROOT_MAX_AGE_DAYS (7; Debian's security updates) or when this script changes what goes
# into it. Needs root, mmdebstrap and buildah (apt-get install mmdebstrap buildah podman runc).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
tag="localhost/asset-worker:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag TAG]" >&2; exit 2 ;;
    esac
done
for tool in mmdebstrap buildah objcopy; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is needed (apt-get install mmdebstrap buildah binutils)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (mmdebstrap and buildah's storage)" >&2; exit 1; }

out=target/image
mkdir -p "$out"
if [ -z "$binary" ]; then
    cargo build --release --locked --bin asset-worker
    binary=target/release/asset-worker
fi

# The base: what debian:bookworm-slim is (minbase, no docs, man pages or locales) plus
# ca-certificates, which the Dockerfile installs on top. The recipe is part of the cache key.
# merged-usr hook: /usr merged the way debootstrap (and so the Docker image) does it, instead
# of the usrmerge package, which would pull perl (40 MB) into the image.
options=(--variant=minbase --include=ca-certificates --aptopt='APT::Install-Recommends "false"'
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*')
mirrors=("deb http://deb.debian.org/debian bookworm main"
    "deb http://deb.debian.org/debian bookworm-updates main"
    "deb http://deb.debian.org/debian-security bookworm-security main")
root="$out/bookworm-slim.tar"
key=$(printf '%s\n' "${options[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$root" ] || [ "$(cat "$root.key" 2>/dev/null)" != "$key" ] \
    || [ -n "$(find "$root" -mtime +"${IMAGE_ROOT_MAX_AGE_DAYS:-7}")" ]; then
    echo "image: making the Debian root with mmdebstrap (cached in $root)" >&2
    # A name ending in .tar: mmdebstrap picks the output format from it.
    rm -rf "$root" "$out/bookworm-slim.partial.tar"
    mmdebstrap --quiet "${options[@]}" bookworm "$out/bookworm-slim.partial.tar" "${mirrors[@]}"
    mv "$out/bookworm-slim.partial.tar" "$root"
    echo "$key" > "$root.key"
fi

# Debug info out, stripped binary in; the symbols stay per tag (the tests' debug build does not
# overwrite the release's).
artifacts="$out/$(printf '%s' "$tag" | tr '/:' '__')"
mkdir -p "$artifacts"
objcopy --only-keep-debug "$binary" "$artifacts/asset-worker.debug"
objcopy --strip-debug --add-gnu-debuglink="$artifacts/asset-worker.debug" "$binary" "$artifacts/asset-worker"

container=$(buildah from scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$container" "$root" / >/dev/null
buildah copy --quiet --chmod 0755 "$container" "$artifacts/asset-worker" /usr/local/bin/asset-worker >/dev/null
# As the Dockerfile's runtime stage (tests/cli/deploy.rs compares the two).
buildah config \
    --user 65532:65532 \
    --port 9090 \
    --entrypoint '["/usr/local/bin/asset-worker"]' \
    --cmd run \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label org.opencontainers.image.source=deploy/image.sh \
    "$container"
previous=$(buildah images --quiet --noheading "$tag" 2>/dev/null || true)
buildah commit --quiet --rm "$container" "$tag" >/dev/null
trap - EXIT
# The image the tag named before, now untagged: gone, unless a container still uses it.
[ -z "$previous" ] || buildah rmi "$previous" >/dev/null 2>&1 || true
echo "$tag"
