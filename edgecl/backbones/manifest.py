"""A build's manifest: read and checked against the model file it names."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edgecl.types import State


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file, read a megabyte at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: str | os.PathLike[str]) -> State:
    """Load a build manifest and check that its model file is there and intact."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone manifest {path} not found; run `edgecl backbone build`")
    try:
        manifest: State = json.loads(path.read_text())
        model = path.parent / manifest["model"]["file"]
        expected = manifest["model"]["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a backbone manifest: {exc}") from None
    if not model.is_file():
        raise ValueError(f"{model} (named in {path}) is missing; rebuild the backbone")
    if sha256_file(model) != expected:
        raise ValueError(f"{model} does not match the sha256 in {path}; rebuild the backbone")
    return manifest
