#!/usr/bin/env bash
# Fuzz the HTTP API of a live `edgecl serve` with schemathesis: no 5xx reply, and every
# reply matches the OpenAPI schema. The daemon runs on 127.0.0.1 with the identity
# backbone (no model build needed) in a temporary data dir; it must then stop on SIGTERM
# with exit status 0.
#
#   scripts/schemathesis.sh            # 30 examples per operation and phase
#   MAX_EXAMPLES=100 scripts/schemathesis.sh
#   SCHEMATHESIS_SEED=123 scripts/schemathesis.sh   # replay a run (the seed is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${MAX_EXAMPLES:-30}"
work="$(mktemp -d)"
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:${port}"

env EDGECL_BACKBONE=identity EDGECL_LATENT_DIM=4 EDGECL_STRATEGY__NAME=ncm \
    EDGECL_STORE__KIND=reservoir EDGECL_LOG_LEVEL=warning \
    python -m service serve --host 127.0.0.1 --port "$port" --data-dir "$work/data" \
    >"$work/daemon.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

python - "$url" "$pid" <<'PY'
import os, sys, time, httpx
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
            break
    except httpx.TransportError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("edgecl serve exited before it was ready")
    time.sleep(0.1)
else:
    sys.exit("edgecl serve was not ready within 60 s")
# A few classes first, so /predict is exercised past its 409 "nothing learned yet".
samples = [{"features": [float(i == k) for i in range(4)], "label": f"c{k}"} for k in range(4)]
httpx.post(f"{url}/learn", json={"samples": samples}).raise_for_status()
PY

status=0
# Run from the temporary dir: schemathesis leaves a cache folder where it runs.
hooks="$(pwd)/scripts"
(
    cd "$work"
    PYTHONPATH="$hooks${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks \
        schemathesis run "$url/openapi.json" \
        --checks not_a_server_error,response_schema_conformance \
        --max-examples "$examples" --generation-database none --no-color \
        ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"}
) || status=$?

kill -TERM "$pid"
daemon_status=0
wait "$pid" || daemon_status=$?
if [ "$daemon_status" -ne 0 ]; then
    echo "edgecl serve exited with status $daemon_status on SIGTERM" >&2
    cat "$work/daemon.log" >&2
    status=1
fi
exit "$status"
