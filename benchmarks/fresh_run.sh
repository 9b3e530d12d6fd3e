#!/usr/bin/env bash
# `make run` as a new user meets it: a fresh clone, `make .venv-run/.installed` (the runtime
# venv, no torch), then `make run` on an empty data dir. Prints the pip install's time,
# whether torch got installed, the seconds from the end of the install until /health/ready
# answers 200, and the daemon's RSS then (first start: the packaged backbone is copied and
# self-checked).
#
# usage: benchmarks/fresh_run.sh            (PYTHON= picks the interpreter)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/edgecl-fresh.XXXXXX")
pid=
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
git clone -q "$root" "$work/repo"
cd "$work/repo"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$(date +%s.%N)
make -s .venv-run/.installed PYTHON="${PYTHON:-python3}" >/dev/null
installed=$(date +%s.%N)
torch=$(.venv-run/bin/python -c 'import importlib.util as u; print("yes" if u.find_spec("torch") else "no")')
EDGECL_PORT=$port EDGECL_DATA_DIR="$work/data" setsid make -s run >"$work/log" 2>&1 &
pid=$!
until curl -fs "http://127.0.0.1:$port/health/ready" >"$work/ready" 2>/dev/null; do
  sleep 0.05
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
done
ready=$(date +%s.%N)
daemon=$(pgrep -n -f "\.venv-run/bin/edgecl serve")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$daemon/status")
python3 - "$start" "$installed" "$ready" "$rss" "$torch" "$work/ready" <<'PY'
import json, sys
start, installed, ready, rss = map(float, sys.argv[1:5])
check = json.load(open(sys.argv[6])).get("backbone_check", {})
print(f"pip install (runtime venv): {installed - start:.1f} s; torch installed: {sys.argv[5]}")
print(f"install end -> /health/ready: {ready - installed:.1f} s; RSS at ready: {rss / 1024:.0f} MiB")
print(f"backbone check: {check.get('session')} session, passed {check.get('passed')}, "
      f"cosine mean {check.get('mean_cosine')} min {check.get('min_cosine')}")
PY
kill -TERM -- -"$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
