#!/usr/bin/env bash
# Opt-in, not part of CI: build the real Dockerfile with buildah (chroot isolation, no Docker
# engine, no registry) on a locally debootstrapped Debian bookworm standing in for
# python:3.11-slim-bookworm, then run the image and wait for /health/ready.
# Measured here: debootstrap about 2 min, build about 3.5 min (vfs storage, ~3 GB of disk).
# Needs root, Debian's buildah and debootstrap, and network to the Debian and PyPI mirrors.
# The image installs no torch (the default backbone ships prebuilt in the package).
#
# usage: sudo scripts/buildah_check.sh          (KEEP=1 keeps the work dir and images)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/edgecl-buildah.XXXXXX")
export STORAGE_DRIVER=vfs
ctr=
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  if [[ -n $ctr ]]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  if [[ ${KEEP:-0} != 1 ]]; then
    buildah rmi -f localhost/edgecl:buildah-check localhost/python:3.11-slim-bookworm \
      >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT
log() { printf 'buildah_check: [%3d s] %s\n' "$SECONDS" "$*" >&2; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    buildah debootstrap >/dev/null
fi

log "debootstrap bookworm (python3, python3-venv)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log"
base=$(buildah from scratch)
mnt=$(buildah mount "$base")
cp -a "$work/rootfs/." "$mnt/"
buildah umount "$base" >/dev/null
buildah commit -q "$base" localhost/python:3.11-slim-bookworm >/dev/null
buildah rm "$base" >/dev/null

# This machine's CA bundle and pip settings for RUN steps.
mkdir -p "$work/pip"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$work/pip/pip.conf"

log "buildah build --isolation chroot"
buildah build --isolation chroot --layers=false --format docker \
  --build-arg PYTHON_IMAGE=localhost/python:3.11-slim-bookworm \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  -v "$work/pip/pip.conf:/etc/pip.conf:ro" \
  -f "$root/Dockerfile" -t localhost/edgecl:buildah-check "$root" >"$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2
  exit 1
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "running the image on 127.0.0.1:$port"
ctr=$(buildah from localhost/edgecl:buildah-check)
buildah run --isolation chroot --env EDGECL_HOST=127.0.0.1 --env "EDGECL_PORT=$port" \
  "$ctr" -- edgecl-entrypoint serve >"$work/run.log" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1 120); do
  if python3 -c 'import sys, urllib.request as r
r.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2)' "$port" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 1
done
if ((!ready)) || grep -q "building the" "$work/run.log"; then
  cat "$work/run.log" >&2
  log "FAIL: not ready after 120 s, or it built a backbone instead of using the image's"
  exit 1
fi
log "OK: the image built and its daemon is ready"
