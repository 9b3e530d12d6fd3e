"""Daemon settings: defaults < YAML file < ``EDGECL_*`` environment < command-line flags."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from service.settings_fleet import FleetSettings
from service.settings_groups import (
    FLAT_KEYS,
    FLAT_NAMES,
    PAPER,
    SHORTHANDS,
    DurabilitySettings,
    MqttSettings,
    ProbeSettings,
    QueueSettings,
    StoreSettings,
    StrategySettings,
    fold,
)
from service.settings_http import DEFAULT_DECODE_PIXELS, DEFAULT_REQUEST_PIXELS, HttpSettings

__all__ = [
    "DEFAULT_DECODE_PIXELS",
    "DEFAULT_REQUEST_PIXELS",
    "PAPER",
    "DurabilitySettings",
    "FleetSettings",
    "MqttSettings",
    "ProbeSettings",
    "QueueSettings",
    "Settings",
    "StoreSettings",
    "StrategySettings",
    "load_settings",
]

_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "edgecl_config_file", default=None
)


class Settings(HttpSettings, BaseSettings):
    """Everything the daemon can be told; unknown keys are errors. Grouped settings are
    given by their flat names (``mqtt_host``) or nested (``mqtt={"host": ...}``).

    >>> s = Settings(port=9000, strategy={"name": "ncm"})
    >>> s.host, s.port, s.strategy.name, s.max_body_bytes
    ('127.0.0.1', 9000, 'ncm', 8388608)
    >>> s = Settings.model_validate({"mqtt_host": "broker", "queue_size": 8})
    >>> s.mqtt.host, s.mqtt.port, s.queue.size
    ('broker', 1883, 8)
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
        default=None,
        ge=0,
        description="ONNX Runtime intra-op threads per backbone run; 0: its default (one per "
        "core); unset: the cores shared out among the embed lanes (one each when there are "
        "as many lanes as cores), or its default without embed batching.",
    )
    backbone_check_min_cosine: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Start-up self-check: lowest cosine between this CPU's int8 latents and the "
        "build's fp32 ones on its check photos; below it the backbone runs with ONNX Runtime's "
        "graph optimisations off (slower, the same on every CPU).",
    )
    embed_batching: bool = Field(
        default=True,
        description="Run the images of concurrent requests through the backbone as shared "
        "batches on `embed_lanes` threads, predictions ahead of learning (see BENCHMARKS.md).",
    )
    embed_lanes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Backbone runs at once: with embed batching, each with backbone_threads "
        "ONNX Runtime threads; without it, requests that embed at once (the rest wait). "
        "Unset: one per core this process may run on.",
    )
    embed_learn_chunk: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="With embed batching: most learn images in one backbone run while "
        "predictions keep coming (a prediction waits for at most one such run).",
    )
    embed_learn_lag_ms: float = Field(
        default=50.0,
        ge=0,
        le=60_000,
        description="With embed batching: the longest predictions may keep every lane from a "
        "learn request's images (none of them run meanwhile) before they run anyway.",
    )
    embed_max_batch: int = Field(
        default=32, ge=1, le=1024, description="Most images in one batched backbone run."
    )
    novelty_threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Novelty above which a prediction says `unknown`; unset: fitted on the "
        "probe's held-back samples to accept novelty_acceptance of them. A request's "
        "`threshold` wins over both.",
    )
    novelty_acceptance: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Share of held-back samples of taught classes the fitted novelty "
        "threshold accepts as known.",
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

    # Writer thread, durability, probe, MQTT: flat names outside (service/settings_groups.py).
    queue: QueueSettings = Field(default_factory=QueueSettings)
    retry_after_s: int = Field(default=1, ge=1)
    durability: DurabilitySettings = Field(default_factory=DurabilitySettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    dashboard_interval_s: float = Field(
        default=5.0, gt=0, description="Seconds between points of the dashboard's time series."
    )
    dashboard_points: int = Field(
        default=720, ge=2, le=100_000, description="Points the dashboard's time series keeps."
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)

    @model_validator(mode="before")
    @classmethod
    def _fold(cls, data: Any) -> Any:
        # For model_validate; the sources below fold each one's keys before they merge.
        return fold(data) if isinstance(data, Mapping) else data

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
        sources = [init_settings, _FlatEnvSource(settings_cls)]
        config = _CONFIG_FILE.get()
        if config is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, config))
        # Folded one by one so that a flat key and its nested form merge by priority.
        return tuple(_Folded(source) for source in sources)


class _FlatEnvSource(EnvSettingsSource):
    """The environment, including the grouped settings' flat names (``EDGECL_MQTT_HOST``)
    and plain values of groups that take one (``EDGECL_STRATEGY=ncm``)."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            if field_name not in SHORTHANDS or not isinstance(value, str):
                raise
        # Not JSON: the group's name, beside its nested variables (EDGECL_STORE__MAX_BYTES).
        nested = self.explode_env_vars(field_name, field, self.env_vars)
        return {**nested, SHORTHANDS[field_name]: value}

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        for flat in FLAT_KEYS:
            name = self.env_prefix + flat
            value = self.env_vars.get(name if self.case_sensitive else name.lower())
            if value is not None:
                data[flat] = value
        return data


class _Folded(PydanticBaseSettingsSource):
    """Another source's values with flat keys moved into their groups."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def _set_current_state(self, state: dict[str, Any]) -> None:
        super()._set_current_state(state)
        self.source._set_current_state(state)

    def _set_settings_sources_data(self, states: dict[str, dict[str, Any]]) -> None:
        super()._set_settings_sources_data(states)
        self.source._set_settings_sources_data(states)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.source.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return fold(self.source())


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
        loc = tuple(str(p) for p in err["loc"])
        if loc[:2] in FLAT_NAMES:  # the name the user knows: mqtt_port, not mqtt.port
            loc = (FLAT_NAMES[(loc[0], loc[1])], *loc[2:])
        where = ".".join(loc)
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
