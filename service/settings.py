"""Daemon settings: defaults < YAML file < ``EDGECL_*`` environment < command-line flags."""

from __future__ import annotations

import contextvars
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from service.settings_http import DEFAULT_DECODE_PIXELS, DEFAULT_REQUEST_PIXELS, HttpSettings

__all__ = ["DEFAULT_DECODE_PIXELS", "DEFAULT_REQUEST_PIXELS", "Settings", "load_settings"]

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "edgecl_config_file", default=None
)


class StrategySettings(BaseModel):
    """Which head strategy learns, and its options (passed to ``edgecl.strategies.create``).

    >>> StrategySettings(name="ncm", options={"temperature": 0.5}).name
    'ncm'
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "slda"
    options: dict[str, Any] = Field(default_factory=dict)


class StoreSettings(BaseModel):
    """The replay store (``kind`` null: none), its byte budget and how latents are encoded.

    >>> StoreSettings(kind=None).kind is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    kind: str | None = "class_balanced"
    max_bytes: int = Field(default=16 << 20, ge=1)
    encoding: str | None = "int8"
    options: dict[str, Any] = Field(default_factory=dict)

    def create_options(self) -> dict[str, Any]:
        """Keyword arguments for ``edgecl.replay.create``."""
        out: dict[str, Any] = {"max_bytes": self.max_bytes, **self.options}
        if self.encoding is not None:
            out["encoding"] = self.encoding
        return out


class Settings(HttpSettings, BaseSettings):
    """Everything the daemon can be told; unknown keys are errors.

    >>> s = Settings(port=9000, strategy={"name": "ncm"})
    >>> s.host, s.port, s.strategy.name, s.max_body_bytes
    ('127.0.0.1', 9000, 'ncm', 8388608)
    """

    model_config = SettingsConfigDict(
        env_prefix="EDGECL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("edgecl-data")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    # Model.
    backbone: Literal["onnx", "identity"] = "onnx"
    backbone_dir: Path | None = None  # default: <data_dir>/backbone
    backbone_cut: str = Field(
        default="pooled", description="Latent cut of the int8 backbone: `pooled` or `blockK`."
    )
    backbone_providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
    )
    backbone_threads: int | None = Field(
        default=None, ge=0, description="ONNX Runtime intra-op threads; unset: its default."
    )
    backbone_check_min_cosine: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Start-up self-check: lowest cosine between this CPU's int8 latents and the "
        "build's fp32 ones on its check photos; below it the backbone runs with ONNX Runtime's "
        "graph optimisations off (slower, the same on every CPU).",
    )
    latent_dim: int = Field(default=16, ge=1)  # identity backbone only
    max_classes: int = Field(
        default=4096,
        ge=1,
        description="Most classes the model may hold: a sample with a new label past it is "
        "refused (422). Head size, checkpoints and learning time grow with the classes.",
    )
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    seed: int = 0
    prequential_window: int = Field(default=500, ge=1)

    # Writer thread.
    queue_size: int = Field(default=64, ge=1)
    max_batch: int = Field(default=64, ge=1)
    max_wait_ms: float = Field(default=5.0, ge=0)
    recent_ids: int = Field(default=10_000, ge=0)
    retry_after_s: int = Field(default=1, ge=1)

    # Durability.
    wal_fsync: Literal["always", "group"] = "always"
    wal_group_ms: float = Field(default=5.0, gt=0)
    wal_segment_bytes: int = Field(
        default=16 << 20, ge=4096, description="A WAL segment file rotates at this size."
    )
    checkpoint_every_samples: int = Field(default=1000, ge=1)
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    checkpoint_keep: int = Field(default=2, ge=1)
    shutdown_timeout_s: float = Field(default=6.0, gt=0)  # drain + checkpoint on SIGTERM

    # Monitoring: the probe set (edgecl/probe.py) and the dashboard's time series.
    probe_share: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="Share of labelled samples held back, never learned, to measure "
        "forgetting; 0 turns the probe off.",
    )
    probe_max_bytes: int = Field(
        default=512 << 10, ge=1024, description="Byte budget of the probe set (int8 latents)."
    )
    probe_every: int = Field(
        default=500, ge=1, description="Re-score the probe after this many learned samples."
    )
    dashboard_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between points of the dashboard's time series."
    )
    dashboard_points: int = Field(
        default=720, ge=2, le=100_000, description="Points the dashboard's time series keeps."
    )

    # MQTT (service/mqtt.py): off unless mqtt_host is set.
    mqtt_host: str | None = Field(
        default=None, description="MQTT broker host; unset: no MQTT (HTTP only)."
    )
    mqtt_port: int = Field(default=1883, ge=1, le=65535, description="MQTT broker port.")
    mqtt_prefix: str = Field(
        default="edgecl",
        pattern=r"^[^/+#\s]+(/[^/+#\s]+)*$",
        description="Topic prefix: topics live under `{prefix}/{device_id}/`.",
    )
    mqtt_device_id: str | None = Field(
        default=None,
        pattern=r"^[^/+#\s]+$",
        description="This device's topic segment; unset: the host name.",
    )
    mqtt_client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="MQTT client id, fixed so the broker keeps the session across restarts; "
        "unset: `edgecl-{device_id}`.",
    )
    mqtt_username: str | None = Field(default=None, description="MQTT user name.")
    mqtt_password: SecretStr | None = Field(default=None, description="MQTT password.")
    mqtt_tls: bool = Field(
        default=False, description="TLS to the broker with the system CAs (implied by a CA file)."
    )
    mqtt_tls_ca: Path | None = Field(default=None, description="CA file that signed the broker.")
    mqtt_tls_cert: Path | None = Field(
        default=None, description="Client certificate for TLS (with `mqtt_tls_key`)."
    )
    mqtt_tls_key: Path | None = Field(default=None, description="Client certificate's key.")
    mqtt_required: bool = Field(
        default=False, description="Readiness includes the broker connection."
    )
    mqtt_keepalive: int = Field(default=30, ge=5, le=65535, description="MQTT keepalive, s.")
    mqtt_qos: Literal[0, 1] = Field(
        default=1,
        description="QoS of subscriptions and replies; 1: at-least-once (a learn message is "
        "acknowledged once in the WAL), 0: at-most-once.",
    )
    mqtt_receive_maximum: int = Field(
        default=64,
        ge=1,
        le=65535,
        description="MQTT messages in flight at once; past that the broker holds the rest.",
    )
    mqtt_session_expiry_s: int = Field(
        default=7 * 86400,
        ge=0,
        le=2**32 - 1,
        description="How long the broker keeps the session (and queued QoS 1 messages) "
        "while the daemon is away.",
    )
    mqtt_reconnect_max_s: int = Field(
        default=60, ge=1, description="Reconnect backoff doubles from 1 s up to this."
    )
    mqtt_model_interval_s: float = Field(
        default=1.0, gt=0, description="At most one retained `model` update per interval."
    )

    @property
    def mqtt_device(self) -> str:
        return self.mqtt_device_id or socket.gethostname()

    @property
    def mqtt_client_id_or_default(self) -> str:
        return self.mqtt_client_id or f"edgecl-{self.mqtt_device}"

    @model_validator(mode="after")
    def _mqtt_tls_pair(self) -> Settings:
        if (self.mqtt_tls_cert is None) != (self.mqtt_tls_key is None):
            raise ValueError("mqtt_tls_cert and mqtt_tls_key go together: set both or neither")
        return self

    @property
    def backbone_path(self) -> Path:
        return self.backbone_dir if self.backbone_dir is not None else self.data_dir / "backbone"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = _CONFIG_FILE.get()
        if config is None:
            return (init_settings, env_settings)
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls, config))


def _check_yaml(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"config file {path} is not valid YAML ({exc})") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings at the top level")


def describe_errors(exc: ValidationError, source: str = "settings") -> str:
    """One sentence per problem, e.g. ``settings: unknown key 'colour'``.

    >>> try:
    ...     Settings(colour="red")
    ... except ValidationError as exc:
    ...     print(describe_errors(exc))
    settings: unknown key 'colour'
    """
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {where!r}")
        else:
            parts.append(f"{where}: {err['msg']}")
    return f"{source}: " + "; ".join(parts)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional YAML file, the environment and ``overrides``.

    Raises ``ValueError`` with a readable sentence for any invalid or unknown key.
    """
    if config is not None:
        _check_yaml(config)
    token = _CONFIG_FILE.set(config)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ValueError(describe_errors(exc, str(config) if config else "settings")) from None
    finally:
        _CONFIG_FILE.reset(token)
