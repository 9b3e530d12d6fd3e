#!/usr/bin/env bash
# Replays the Dockerfile without a Docker engine, so the image cannot drift from the code:
#  - copies what the build stage COPYs (a clean checkout's files) into a temp context,
#  - runs the build stage's own `sh scripts/image-build-env.sh ...` lines there (same
#    requirement files, pip flags, `pip check` and backbone build) into a fresh venv,
#  - starts the daemon through the image's ENTRYPOINT/CMD with the image's ENV and USER (when
#    run as root) on a free 127.0.0.1 port and a temp data dir, polls the HEALTHCHECK command
#    until ready,
#  - stops it with SIGTERM (exit 0 expected), starts it again on the same data, and checks
#    that nothing was written outside the data dir and /tmp (the image's root is read-only).
# Differences from `docker build`, on purpose: /opt/... lives under the temp dir, the daemon
# listens on 127.0.0.1, and TORCH_INDEX_URL (PyTorch's CPU index) is not set: pip's
# configuration here already provides the CPU torch wheel.
#
# usage: scripts/image_env_check.sh          (KEEP=1 keeps the temp dir for inspection)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dockerfile=$root/Dockerfile
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgecl-image-env.XXXXXX")
pid=

log() { printf 'image_env_check: [%3d s] %s\n' "$SECONDS" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  # Deleting ~30k files takes a minute on some filesystems: do it in the background.
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $work"; else (rm -rf "$work" >/dev/null 2>&1 &); fi
}
trap cleanup EXIT

# The instructions of one stage, continuation lines joined, comments dropped.
stage() {
  sed -e ':a' -e '/\\$/N' -e 's/\\\n[[:space:]]*/ /' -e 'ta' "$dockerfile" |
    awk -v want="$1" 'toupper($1) == "FROM" { cur = $NF; next } /^[[:space:]]*#/ { next }
      cur == want && NF { print }'
}
# /opt/... and /usr/local/bin/... of the image, under the temp dir.
remap() { sed -e "s#/opt/#$work/opt/#g" -e "s#/usr/local/bin/#$work/bin/#g" <<<"$1"; }
json_array() { "$python" -c 'import json, shlex, sys; print(shlex.join(json.loads(sys.argv[1])))' "$1"; }

build=$(stage build)
runtime=$(stage runtime)
[[ -n $build && -n $runtime ]] || fail "$dockerfile has no 'build' and 'runtime' stages"

mkdir -p "$work/src" "$work/opt" "$work/bin" "$work/data" "$work/tmp"

# The image's USER (numeric uid:gid): as root, run the daemon and the healthcheck as that user,
# so files the image's user cannot read or write fail here as they would in the container.
as_user=()
user=$(sed -n 's/^USER //p' <<<"$runtime" | tail -1)
if [[ $(id -u) == 0 && $user =~ ^([0-9]+):([0-9]+)$ ]]; then
  as_user=(setpriv "--reuid=${BASH_REMATCH[1]}" "--regid=${BASH_REMATCH[2]}" --clear-groups)
  chmod 0755 "$work"
  chown "$user" "$work/data" "$work/tmp"
fi
# The interpreter: the image's Python minor version, runnable by the image's user (a pyenv
# Python under /root is not).
want=$(sed -n 's/^ARG PYTHON_IMAGE=python:\([0-9]*\.[0-9]*\).*/\1/p' "$dockerfile")
usable() { # a venv of it runs a console-style script (shebang) as the image's user
  local probe=$work/probe
  rm -rf "$probe"
  "$1" -m venv --without-pip "$probe" 2>/dev/null || return 1
  printf '#!%s\nimport sys\nsys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" != "%s")\n' \
    "$probe/bin/python" "$want" >"$probe/bin/probe"
  chmod 0755 "$probe/bin/probe"
  # Through a shell, as the entrypoint starts edgecl (a direct exec can pass where that fails).
  # shellcheck disable=SC2016 # $0 is expanded by the inner shell
  "${as_user[@]}" env -i sh -c 'exec "$0"' "$probe/bin/probe" 2>/dev/null
}
for candidate in "$python" "python$want" "/usr/bin/python$want"; do
  if usable "$candidate"; then
    python=$candidate
    break
  fi
done
usable "$python" || fail "no Python $want that uid ${user:-?} can run (set PYTHON=)"
rm -rf "$work/probe"
log "Python: $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

# 1. The build context: each COPY of the build stage, from a clean checkout's files.
# .dockerignore is an allowlist ("*" then "!path" lines): is SRC inside an allowed path?
allowed() {
  local line
  while IFS= read -r line; do
    [[ $line == '!'* ]] || continue
    line=${line#!}
    line=${line%/}
    [[ ${1%/} == "$line" || ${1%/} == "$line"/* ]] && return 0
  done <"$root/.dockerignore"
  return 1
}
copy_into() { # copy_into DEST_ROOT SRC... DEST   (one COPY instruction, flags removed)
  local dest_root=$1
  shift
  local args=("$@") dest
  dest=${args[-1]}
  unset 'args[-1]'
  for src in "${args[@]}"; do
    allowed "$src" || fail "COPY source $src is not allowed by .dockerignore"
    local files
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
      files=$(cd "$root" && git ls-files -co --exclude-standard -- "$src")
    else
      files=$(cd "$root" && find "$src" -type f -not -path '*/__pycache__/*')
    fi
    [[ -n $files ]] || fail "COPY source $src has no files"
    while IFS= read -r f; do
      local rel=$f
      [[ $src == */ ]] && rel=${f#"$src"}
      [[ $src != */ ]] && rel=$(basename "$f")
      local target
      if [[ $dest == */ ]]; then target=$dest_root/$dest$rel; else target=$dest_root/$dest; fi
      mkdir -p "$(dirname "$target")"
      cp "$root/$f" "$target"
    done <<<"$files"
  done
}
while read -r -a words; do
  [[ ${words[0]^^} == COPY ]] || continue
  args=()
  for w in "${words[@]:1}"; do [[ $w == --* ]] || args+=("$w"); done
  copy_into "$work/src" "${args[@]}"
done <<<"$build"

# 2. The build stage's environment steps, as the Dockerfile runs them.
steps=$(grep -o 'sh scripts/image-build-env.sh .*' <<<"$build" || true)
[[ $(wc -l <<<"$steps") -ge 2 ]] || fail "the build stage does not run scripts/image-build-env.sh"
started=$SECONDS
while IFS= read -r step; do
  log "running: $step"
  read -r -a cmd <<<"$(remap "$step")"
  (cd "$work/src" && PYTHON=$python "${cmd[@]}") || fail "$step"
done <<<"$steps"
build_s=$((SECONDS - started))
venv=$work/opt/venv
[[ -x $venv/bin/edgecl ]] || fail "no edgecl in $venv after the build steps"

# 3. requirements/jetson.txt carries pyproject's ranges, less what the L4T base provides.
"$venv/bin/python" -I - "$root/requirements/jetson.txt" <<'EOF' || fail "requirements/jetson.txt"
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

base = {"torch", "numpy", "onnxruntime"}
want = {}
for line in requires("edgecl") or []:
    r = Requirement(line)
    if r.marker is None or r.marker.evaluate({"extra": "build"}):
        if canonicalize_name(r.name) not in base:
            want[canonicalize_name(r.name)] = str(r.specifier)
have = {}
for line in open(sys.argv[1], encoding="utf-8"):
    line = line.split("#", 1)[0].strip()
    if line:
        r = Requirement(line)
        have[canonicalize_name(r.name)] = str(r.specifier)
if have != want:
    for name in sorted(set(have) | set(want)):
        if have.get(name) != want.get(name):
            print(f"  {name}: pyproject {want.get(name)!r}, jetson.txt {have.get(name)!r}",
                  file=sys.stderr)
    sys.exit(1)
EOF

# 4. The runtime stage: its COPYs from the context, ENV, ENTRYPOINT + CMD, HEALTHCHECK.
while read -r -a words; do
  [[ ${words[0]^^} == COPY ]] || continue
  args=()
  from=0
  for w in "${words[@]:1}"; do
    [[ $w == --from=* ]] && from=1
    [[ $w == --* ]] || args+=("$(remap "$w")")
  done
  ((from)) && continue
  copy_into "" "${args[@]}"
  if [[ -f ${args[-1]} ]]; then chmod 0755 "${args[-1]}"; fi
done <<<"$runtime"
image_env=()
while read -r -a words; do
  [[ ${words[0]^^} == ENV ]] || continue
  for kv in "${words[@]:1}"; do
    [[ $kv == *=* && $kv != PATH=* ]] && image_env+=("$kv")
  done
done <<<"$runtime"
entrypoint=$(sed -n 's/^ENTRYPOINT //p' <<<"$runtime")
command=$(sed -n 's/^CMD //p' <<<"$runtime")
healthcheck=$(sed -n 's/^HEALTHCHECK .* CMD //p' <<<"$runtime")
[[ -n $entrypoint && -n $command && -n $healthcheck ]] ||
  fail "the runtime stage needs ENTRYPOINT, CMD and HEALTHCHECK in exec (JSON) form"
run_argv=()
health_argv=()
eval "run_argv=($(remap "$(json_array "$entrypoint") $(json_array "$command")"))"
eval "health_argv=($(json_array "$healthcheck"))"

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
daemon_env=(
  "${as_user[@]}" env -i "HOME=$work/data" "TMPDIR=$work/tmp" "LANG=C.UTF-8"
  "PATH=$venv/bin:$work/bin:/usr/bin:/bin" "SEED_BACKBONE_DIR=$work/opt/edgecl/backbone"
  "${image_env[@]}" "EDGECL_HOST=127.0.0.1" "EDGECL_PORT=$port" "EDGECL_DATA_DIR=$work/data"
)

# 5. Start, wait for the HEALTHCHECK to pass, SIGTERM, expect exit 0; twice on the same data.
run_once() { # run_once N
  local logf=$work/daemon-$1.log waited=0 rc=0 rss
  (cd "$work/data" && exec "${daemon_env[@]}" "${run_argv[@]}") >"$logf" 2>&1 &
  pid=$!
  until "${daemon_env[@]}" "${health_argv[@]}" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || {
      cat "$logf" >&2
      fail "the daemon exited before it was ready (start $1)"
    }
    ((waited < 180)) || {
      cat "$logf" >&2
      fail "not ready after 180 s (start $1)"
    }
    sleep 1
    waited=$((waited + 1))
  done
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  log "start $1: ready after ~${waited} s, RSS $((rss / 1024)) MiB"
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  pid=
  if ((rc != 0)); then
    cat "$logf" >&2
    fail "the daemon exited with $rc after SIGTERM (start $1)"
  fi
  if grep -q "building the" "$logf"; then
    cat "$logf" >&2
    fail "the daemon built a backbone at start instead of using the image's (start $1)"
  fi
}
touch "$work/stamp"
sleep 1
run_once 1
compgen -G "$work/data/backbone/*/manifest.json" >/dev/null ||
  fail "the entrypoint did not copy the image's backbone into the data dir"
run_once 2
written=$(find "$work/opt" "$work/bin" -newer "$work/stamp" | head -5)
[[ -z $written ]] || fail "the daemon wrote outside its data dir (read-only root): $written"

log "OK: build ${build_s} s, venv $(du -sm "$venv" | cut -f1) MiB, backbone" \
  "$(du -sk "$work/opt/edgecl" | cut -f1) KiB; two starts and SIGTERM stops exited 0"
