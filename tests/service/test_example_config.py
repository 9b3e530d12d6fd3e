"""The shipped example configuration (deploy/edgecl.example.yaml) is valid as shipped and
with every commented-out setting turned on, and the daemon ends up with its values."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from service.settings import Settings, load_settings
from service.settings_groups import FLAT_KEYS, SHORTHANDS
from tests.service.daemon import edgecl_env

EXAMPLE = Path(__file__).parents[2] / "deploy" / "edgecl.example.yaml"
#: A commented-out setting: '#' directly followed by a key (prose has a space after '#').
COMMENTED = re.compile(r"^(\s*)#([a-z_]+:.*)$", re.M)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("EDGECL_"):
            monkeypatch.delenv(key)


def plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    return value


def assert_lands(settings: Settings, data: dict[str, Any]) -> None:
    """Every key of ``data`` has its value in ``settings``."""
    for key, value in data.items():
        if key in FLAT_KEYS:
            group, name = FLAT_KEYS[key]
            got = getattr(getattr(settings, group), name)
        else:
            got = getattr(settings, key)
        if key in SHORTHANDS and isinstance(value, str):
            value = {SHORTHANDS[key]: value}
        if isinstance(got, BaseModel):
            assert isinstance(value, dict)
            for field, wanted in value.items():
                assert plain(getattr(got, field)) == wanted, f"{key}.{field}"
        else:
            assert plain(got) == value, key


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "serve", "--validate-config", str(path)],
        env=edgecl_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_example_is_valid_and_its_values_are_the_settings() -> None:
    out = validate(EXAMPLE)
    assert (out.returncode, out.stdout) == (0, f"{EXAMPLE}: valid\n"), out.stderr
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert {"strategy", "store", "probe_share", "novelty_acceptance", "mqtt_port"} <= set(data)
    assert_lands(load_settings(EXAMPLE), data)


def test_the_example_with_every_commented_setting_turned_on(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    turned_on = COMMENTED.sub(r"\1\2", text)
    names = {m[2].split(":")[0] for m in COMMENTED.finditer(text)}
    assert {"api_token", "max_bytes", "novelty_threshold", "mqtt_host"} <= names
    path = tmp_path / "edgecl.yaml"
    path.write_text(turned_on, encoding="utf-8")
    out = validate(path)
    assert out.returncode == 0, out.stderr
    assert_lands(load_settings(path), yaml.safe_load(turned_on))
