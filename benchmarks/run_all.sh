#!/usr/bin/env bash
# Runs every benchmark against 127.0.0.1, each bounded in time, and rewrites its section of
# BENCHMARKS.md. Run from the repository root:
#
#     benchmarks/run_all.sh              # everything (about 1.5 h on 2 cores, most of it the
#                                        # quality runs: bench cl and nic, ar1 above all)
#     benchmarks/run_all.sh service      # only the service benchmarks (throughput, memory,
#                                        # start-up, learn-to-visible, hostile load, kill -9)
#
# PYTHON picks the interpreter (default: python). The mqtt row needs mosquitto on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RUN=(nice -n 5 env OPENBLAS_NUM_THREADS=1)
what=${1:-all}

step() { echo "== $*" >&2; "${RUN[@]}" "$@"; }

if [[ $what == all ]]; then
    step "$PY" benchmarks/strategy_cost.py
    step "$PY" benchmarks/wal_bench.py
    step "$PY" -m benchmarks.durability_daemon
    if command -v mosquitto >/dev/null; then
        step "$PY" benchmarks/mqtt_vs_http.py --messages 2000
    else
        echo "== skipped mqtt_vs_http: no mosquitto" >&2
    fi
    step "$PY" -m benchmarks.backbone_speed
    step "$PY" -m service bench cl --out BENCHMARKS.md --strategies \
        naive,latent_replay,cwr_star,ar1,exstream,gdumb,slda,ncm,latent_replay@float32,gdumb@float32,gdumb@pq,latent_replay@pq
    step "$PY" -m edgecl.bench.nic --out BENCHMARKS.md
    step "$PY" -m benchmarks.raw_store
fi
if [[ $what == all || $what == service ]]; then
    step "$PY" -m benchmarks.service_load
    step "$PY" -m benchmarks.memory_soak
    step "$PY" -m benchmarks.memory_soak --strategies ar1 ar1_cl --budget-s 300 --append
    step "$PY" -m benchmarks.startup
    step "$PY" -m benchmarks.learn_to_visible
    step "$PY" -m benchmarks.hostile_load
    step "$PY" -m benchmarks.kill_loop --kills 100
    step "$PY" -m benchmarks.kill_loop --kills 100 --big --append
    step "$PY" -m benchmarks.kill_loop --kills 100 --big --load-s 4 --append
fi
