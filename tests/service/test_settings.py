"""Settings: defaults, YAML file, EDGECL_* environment, flags; unknown keys are errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.__main__ import main
from service.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("EDGECL_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edgecl.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port, s.data_dir) == ("127.0.0.1", 8080, Path("edgecl-data"))
    assert s.strategy.name == "slda" and s.backbone == "onnx"
    assert s.max_body_bytes == 8 << 20 and s.api_token is None
    assert s.backbone_path == Path("edgecl-data") / "backbone"


def test_yaml_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "port: 9001\nstrategy:\n  name: ncm\n  options: {temperature: 0.5}\n"
        "store: {kind: reservoir, max_bytes: 4096, encoding: float16}\n",
    )
    s = load_settings(path)
    assert s.port == 9001 and s.strategy.options == {"temperature": 0.5}
    assert s.store.resolve("ncm", (4,)) == ("reservoir", {"max_bytes": 4096, "encoding": "float16"})


def test_environment_beats_file_and_flags_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "port: 9001\nhost: 0.0.0.0\n")
    monkeypatch.setenv("EDGECL_PORT", "9002")
    monkeypatch.setenv("EDGECL_STRATEGY__NAME", "ncm")
    monkeypatch.setenv("EDGECL_API_TOKEN", "secret")
    s = load_settings(path)
    assert (s.port, s.host, s.strategy.name) == (9002, "0.0.0.0", "ncm")
    assert s.api_token is not None and s.api_token.get_secret_value() == "secret"
    assert "secret" not in repr(s)
    assert load_settings(path, port=9003, host=None).port == 9003


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: red\n", "unknown key 'colour'"),
        ("strategy: {name: ncm, colour: red}\n", "unknown key 'strategy.colour'"),
        ("port: eighty\n", "port: Input should be a valid integer"),
        ("wal_fsync: sometimes\n", "wal_fsync: Input should be 'always' or 'group'"),
        ("- port\n", "must hold a mapping"),
        ("port: [\n", "is not valid YAML"),
        ("api_token: '  '\n", "api_token is empty"),
    ],
)
def test_bad_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        load_settings(write(tmp_path, text))


def test_unknown_keyword_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        load_settings(colour="red")


def test_validate_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "strategy: {name: ncm}\nstore: {kind: reservoir}\n")
    assert main(["serve", "--validate-config", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: {name: ncm, options: {temp: 1}}\n", encoding="utf-8")
    assert main(["serve", "--validate-config", str(bad)]) == 2
    assert "bad options for strategy 'ncm'" in capsys.readouterr().err
    assert main(["serve", "--validate-config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_validate_config_from_the_console_script(tmp_path: Path) -> None:
    bad = write(tmp_path, "prot: 8080\n")
    out = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--validate-config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"edgecl: error: {bad}: unknown key 'prot'"


def test_settings_are_plain_pydantic() -> None:
    assert Settings.model_validate({"store": {"kind": None}}).store.kind is None


def test_grouped_settings_keep_their_flat_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "mqtt_host: broker\nmqtt_port: 8883\nqueue_size: 3\nprobe_share: 0\n")
    monkeypatch.setenv("EDGECL_MQTT_PORT", "1884")
    monkeypatch.setenv("EDGECL_CHECKPOINT_EVERY_SAMPLES", "7")
    s = load_settings(path, max_batch=5)
    assert (s.mqtt.host, s.mqtt.port, s.mqtt.device_id) == ("broker", 1884, None)
    assert (s.queue.size, s.queue.max_batch, s.probe.share) == (3, 5, 0.0)
    assert s.durability.checkpoint_every_samples == 7
    assert load_settings(path, mqtt_port=1885).mqtt.port == 1885


def test_yaml_takes_a_group_nested_and_a_flat_key_beats_it_in_the_same_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "mqtt: {host: broker, port: 8883}\nprobe: {every: 9}\n")
    s = load_settings(path)
    assert (s.mqtt.host, s.mqtt.port, s.probe.every) == ("broker", 8883, 9)
    monkeypatch.setenv("EDGECL_MQTT_HOST", "other")
    s = load_settings(path)
    assert (s.mqtt.host, s.mqtt.port) == ("other", 8883)  # the environment beats the file
    both = write(tmp_path, "mqtt: {host: a}\nmqtt_host: b\n")
    assert load_settings(both, mqtt_port=1).mqtt.host == "other"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt_colour: red\n", "unknown key 'mqtt_colour'"),
        ("mqtt: {colour: red}\n", "unknown key 'mqtt.colour'"),
        ("mqtt_port: 0\n", "mqtt_port: Input should be greater than or equal to 1"),
        ("mqtt: {port: 0}\n", "mqtt_port: Input should be greater than or equal to 1"),
        ("queue_size: 0\n", "queue_size: Input should be greater than or equal to 1"),
        ("mqtt_tls_key: k.pem\n", "mqtt_tls_cert and mqtt_tls_key go together"),
    ],
)
def test_grouped_settings_errors_name_the_flat_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(write(tmp_path, text))


def test_a_plain_strategy_or_store_is_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "strategy: ncm\nstore: class_balanced\n")
    s = load_settings(path)
    assert (s.strategy.name, s.store.kind) == ("ncm", "class_balanced")
    monkeypatch.setenv("EDGECL_STRATEGY", "gdumb")
    monkeypatch.setenv("EDGECL_STORE", "reservoir")
    monkeypatch.setenv("EDGECL_STORE__MAX_BYTES", "4096")
    s = load_settings(path)
    assert (s.strategy.name, s.store.kind, s.store.max_bytes) == ("gdumb", "reservoir", 4096)
    assert load_settings(path, strategy="slda").strategy.name == "slda"  # a flag wins


def test_a_plain_strategy_keeps_the_options_a_lower_source_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "strategy: {name: slda, options: {temperature: 0.5}}\n")
    monkeypatch.setenv("EDGECL_STRATEGY", "ncm")
    s = load_settings(path)
    assert (s.strategy.name, s.strategy.options) == ("ncm", {"temperature": 0.5})
    monkeypatch.setenv("EDGECL_STRATEGY", '{"name": "slda"}')  # JSON still works
    assert load_settings(path).strategy.name == "slda"


def test_an_unknown_plain_strategy_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGECL_STRATEGY", "nmc")
    assert main(["serve", "--validate-config", str(write(tmp_path, "port: 8080\n"))]) == 2
    assert "unknown strategy 'nmc'" in capsys.readouterr().err


def test_version_flag() -> None:
    import edgecl

    out = subprocess.run(
        [sys.executable, "-m", "service", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout) == (0, f"edgecl {edgecl.__version__}\n")
