#!/bin/sh
# Container entrypoint: give a new data volume the backbone built into the image, then run
# `edgecl ARGS`. From then on the backbone stays beside the learned state, so upgrading the
# image never swaps the feature extractor under a trained head. With EDGECL_BACKBONE_DIR set
# the daemon uses that directory and nothing is copied.
# SEED_BACKBONE_DIR: the image's builds (default /opt/edgecl/backbone).
set -eu

seed=${SEED_BACKBONE_DIR:-/opt/edgecl/backbone}
target=${EDGECL_DATA_DIR:-/data}/backbone

if [ -z "${EDGECL_BACKBONE_DIR:-}" ] && [ -d "$seed" ]; then
  for build in "$seed"/*/; do
    if [ ! -r "${build}manifest.json" ]; then
      echo "edgecl-entrypoint: cannot read ${build}manifest.json; not copied" >&2
      continue
    fi
    name=$(basename "$build")
    [ -e "$target/$name/manifest.json" ] && continue
    mkdir -p "$target"
    # Copy aside, then rename: an interrupted copy never looks like a build.
    tmp=$(mktemp -d "$target/.seed-$name-XXXXXX")
    cp -R "$build". "$tmp"
    rm -rf "${target:?}/$name"
    mv "$tmp" "$target/$name"
    echo "edgecl-entrypoint: copied the image's backbone $name into $target" >&2
  done
fi

exec edgecl "$@"
