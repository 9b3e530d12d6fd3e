#!/bin/sh
# The image's Python environment and int8 backbone. One script for the Dockerfiles, the
# Raspberry Pi installer and scripts/image_env_check.sh, so none of them can drift apart.
# Run from the source root:
#
#   sh scripts/image-build-env.sh deps VENV            new venv + the pinned runtime requirements
#                                                      (requirements/tools.txt, runtime.txt)
#   sh scripts/image-build-env.sh deps-build VENV      adds the build extra to VENV: torch (CPU)
#                                                      and build.txt, for `edgecl backbone build`
#   sh scripts/image-build-env.sh deps-jetson VENV     new venv over the L4T image's torch,
#                                                      numpy and onnxruntime-gpu (Dockerfile.jetson)
#   sh scripts/image-build-env.sh project VENV DIR     edgecl itself, `pip check`, and the int8
#                                                      backbone that ships in it, in DIR/backbone
#
# PYTHON picks the interpreter (default python3); pip's own PIP_* variables apply.
# TORCH_INDEX_URL (deps-build only): the only index torch is taken from (PyTorch's CPU index:
# PyPI's torch is the CUDA build on amd64 and arm64). Unset: pip's configured indexes.
# EDGECL_PIP_CHECK=warn reports `pip check` problems without failing (Jetson bases carry
# packages of their own whose metadata we do not control).
set -eu

usage() {
  echo "usage: $0 deps VENV | deps-build VENV | deps-jetson VENV | project VENV DATA_DIR" >&2
  exit 2
}

[ $# -ge 2 ] || usage
phase=$1
venv=$2

pip() {
  # -I: the current directory (a source tree with its own *.egg-info) stays off sys.path.
  "$venv/bin/python" -I -m pip --no-input "$@"
}

case $phase in
deps)
  [ $# -eq 2 ] || usage
  "${PYTHON:-python3}" -m venv "$venv"
  pip install --no-deps -r requirements/tools.txt
  # Every package is pinned in these files: --no-deps keeps pip from adding anything else,
  # and `pip check` in the project phase proves nothing is missing. No torch: the default
  # backbone ships prebuilt in the package.
  pip install --no-deps -r requirements/runtime.txt
  ;;
deps-build)
  [ $# -eq 2 ] || usage
  pip install --no-deps -r requirements/build.txt
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    pip install --no-deps --index-url "$TORCH_INDEX_URL" -r requirements/torch.txt
  else
    pip install --no-deps -r requirements/torch.txt
  fi
  ;;
deps-jetson)
  [ $# -eq 2 ] || usage
  # Ubuntu's python3 lacks ensurepip; pip comes from the base through the system site.
  "${PYTHON:-python3}" -m venv --system-site-packages --without-pip "$venv"
  pip install --no-deps -r requirements/tools.txt
  # The base's CUDA torch was built against its numpy: keep both as they are.
  "$venv/bin/python" -c 'import numpy, torch
print(f"numpy=={numpy.__version__}\ntorch=={torch.__version__}")' >"$venv/base-constraints.txt"
  pip install -c "$venv/base-constraints.txt" "${ONNXRUNTIME_SPEC:-onnxruntime-gpu}"
  pip install -c "$venv/base-constraints.txt" -r requirements/jetson.txt
  ;;
project)
  [ $# -eq 3 ] || usage
  pip install --no-deps --no-build-isolation .
  if ! report=$(pip check 2>&1); then
    echo "$report" >&2
    if [ "${EDGECL_PIP_CHECK:-fail}" != warn ]; then
      echo "pip check failed: update requirements/*.txt (see requirements/runtime.txt)" >&2
      exit 1
    fi
  fi
  # Both paths given: an EDGECL_BACKBONE_DIR in the environment must not redirect it.
  "$venv/bin/edgecl" backbone install --data-dir "$3" --backbone-dir "$3/backbone"
  # The copy is written private (mkdtemp); the image's non-root user must read it.
  chmod -R a+rX "$3/backbone"
  ;;
*)
  usage
  ;;
esac
