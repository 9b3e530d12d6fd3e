#!/usr/bin/env bash
# int8 vs fp32 latents of the shipped backbone on Arm's int8 kernels, under qemu-user
# emulation (agreement only: emulated speed means nothing). Writes the "Backbone on arm64"
# section of BENCHMARKS.md. Needs root, Debian's qemu-user-static and debootstrap, the
# Debian and PyPI registries, and .venv (torch: the fp32 model is exported here).
#
#   sudo benchmarks/arm64_agreement.sh [ROOTFS]     (default /tmp/edgecl-arm64; reused if there)
#
# ROOTFS: a bookworm arm64 root file system (debootstrap's first stage, every package
# unpacked with dpkg-deb: nothing needs to run inside it), its python3.11 given the pinned
# aarch64 wheels of requirements/runtime.txt with pip --target. qemu 7.2 does not emulate
# /proc/cpuinfo, and ONNX Runtime's CPU detection crashes on the host's x86 text, so each run
# sees a Cortex-A72 (Raspberry Pi 4: NEON, no dot product) or Cortex-A76 (Pi 5: dot product)
# /proc/cpuinfo, bind-mounted in a mount namespace of its own (unshare -m).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rootfs=${1:-/tmp/edgecl-arm64}
py=${PYTHON:-$root/.venv/bin/python}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgecl-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ ! -x $rootfs/usr/bin/python3.11 ]]; then
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,libgomp1 \
    bookworm "$rootfs" "$mirror"
  for deb in "$rootfs"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
fi
if [[ ! -d $rootfs/opt/site/onnxruntime ]]; then
  grep -E '^(numpy|onnxruntime|pillow|flatbuffers|packaging|protobuf|msgpack|lz4)==' \
    "$root/requirements/runtime.txt" >"$work/req.txt"
  "$py" -m pip install -q --target "$rootfs/opt/site" --only-binary=:all: --no-deps \
    --python-version 3.11 --implementation cp --platform manylinux2014_aarch64 \
    --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 -r "$work/req.txt"
fi

# The fp32 twin of the shipped model, exported here (same code, same weights).
"$py" -m service backbone build --backbone-dir "$work/build" --keep-fp32 >/dev/null
fp32=$work/build/efficientnet-lite0-pooled/model.fp32.onnx
shipped=$root/edgecl/data/backbone/efficientnet-lite0-pooled/manifest.json

features() { # cpuinfo FILE PART FEATURES
  for i in 0 1; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$3"
    printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' "$2"
  done >"$1"
}
features "$work/a72" 0xd08 "fp asimd evtstrm crc32 cpuid"
features "$work/a76" 0xd0b "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"

cat >"$work/check.py" <<'PY'
import platform, sys
import numpy as np, onnxruntime
from edgecl.backbones.build import calibration_files, default_calibration_dir
from edgecl.backbones.onnx import OnnxBackbone, read_manifest
from edgecl.backbones.selfcheck import cosines, open_checked
manifest, fp32_path = sys.argv[1], sys.argv[2]
norm = read_manifest(manifest)["normalisation"]
with default_calibration_dir() as folder:
    photos = [f.read_bytes() for f in calibration_files(folder / "heldout")]
fp32 = OnnxBackbone(fp32_path, mean=norm["mean"], std=norm["std"]).embed(photos)
for optimized in (True, False):
    int8 = OnnxBackbone.from_manifest(manifest, graph_optimizations=optimized)
    s = cosines(int8.embed(photos), fp32)
    kind = "optimized" if optimized else "reference"
    print(f"{kind} {s.mean():.4f} {s.min():.4f}")
c = open_checked(manifest).check
print(f"selfcheck {c['session']} {c['passed']} {c['mean_cosine']:.4f} {c['min_cosine']:.4f}")
print(f"versions {platform.machine()} {onnxruntime.__version__} {np.__version__}")
PY
rows=()
for cpu in a72 a76; do
  # shellcheck disable=SC2016 # $1 and $@ are the inner shell's
  out=$(unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$work/$cpu" \
    qemu-aarch64-static -cpu "cortex-$cpu" -L "$rootfs" \
    -E "PYTHONPATH=$rootfs/opt/site:$root" "$rootfs/usr/bin/python3.11" \
    "$work/check.py" "$shipped" "$fp32")
  echo "$cpu: $out" | tr '\n' ' '
  echo
  rows+=("$cpu|$(tr '\n' '|' <<<"$out")")
done
"$py" - "$(qemu-aarch64-static --version | head -1)" "${rows[@]}" <<'PY'
import sys
from benchmarks.backbone_speed import write_section
head = "## Backbone on arm64 (int8 vs fp32 under qemu-user emulation)"
names = {"a72": "Cortex-A72 (Raspberry Pi 4; NEON, no dot product)",
         "a76": "Cortex-A76 (Raspberry Pi 5; dot product)"}
lines = [head, "", "Command: `sudo benchmarks/arm64_agreement.sh`", "",
         f"{sys.argv[1]}, a Debian bookworm arm64 root file system, Python 3.11 and the pinned "
         "aarch64 wheels. The shipped int8 model against its fp32 twin on the held-out photos "
         "(cosine mean / lowest), with ONNX Runtime's optimized session (Arm's int8 kernels) and "
         "with graph optimisations off; and the daemon's start-up self-check there. Emulation "
         "runs the real aarch64 code of ONNX Runtime; its speed is not measured.", "",
         "| emulated CPU | ONNX Runtime | optimized | reference | self-check |",
         "| --- | --- | ---: | ---: | --- |"]
for row in sys.argv[2:]:
    cpu, *parts = row.rstrip("|").split("|")
    f = {p.split()[0]: p.split()[1:] for p in parts}
    lines.append(f"| {names[cpu]} | {f['versions'][1]} | {f['optimized'][0]} / {f['optimized'][1]} | "
                 f"{f['reference'][0]} / {f['reference'][1]} | {f['selfcheck'][0]} session, "
                 f"passed {f['selfcheck'][1]}, lowest {f['selfcheck'][3]} |")
write_section("\n".join(lines) + "\n", heading=head)
print("\n".join(lines))
PY
