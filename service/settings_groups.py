"""The grouped settings (MQTT, durability, probe, writer queue, strategy, store) and the flat
external names of the first four.

Each grouped setting keeps the flat name it always had: ``mqtt_host`` in YAML and as a
keyword, ``EDGECL_MQTT_HOST`` in the environment. :func:`fold` moves flat keys into their
group, so ``mqtt_host: x`` and ``mqtt: {host: x}`` mean the same; it also reads a plain
value of ``strategy`` or ``store`` as its name (``strategy: ncm``, ``EDGECL_STORE=reservoir``).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from service.settings_fleet import FleetSettings


class MqttSettings(BaseModel):
    """The MQTT bridge (service/mqtt.py): off unless ``host`` is set.

    >>> MqttSettings(device_id="pi-7").client_id_or_default
    'edgecl-pi-7'
    """

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(
        default=None, description="MQTT broker host; unset: no MQTT (HTTP only)."
    )
    port: int = Field(default=1883, ge=1, le=65535, description="MQTT broker port.")
    prefix: str = Field(
        default="edgecl",
        pattern=r"^[^/+#\s]+(/[^/+#\s]+)*$",
        description="Topic prefix: topics live under `{prefix}/{device_id}/`.",
    )
    device_id: str | None = Field(
        default=None,
        pattern=r"^[^/+#\s]+$",
        description="This device's topic segment; unset: the host name.",
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="MQTT client id, fixed so the broker keeps the session across restarts; "
        "unset: `edgecl-{device_id}`.",
    )
    username: str | None = Field(default=None, description="MQTT user name.")
    password: SecretStr | None = Field(default=None, description="MQTT password.")
    tls: bool = Field(
        default=False, description="TLS to the broker with the system CAs (implied by a CA file)."
    )
    tls_ca: Path | None = Field(default=None, description="CA file that signed the broker.")
    tls_cert: Path | None = Field(
        default=None, description="Client certificate for TLS (with `mqtt_tls_key`)."
    )
    tls_key: Path | None = Field(default=None, description="Client certificate's key.")
    required: bool = Field(default=False, description="Readiness includes the broker connection.")
    keepalive: int = Field(default=30, ge=5, le=65535, description="MQTT keepalive, s.")
    qos: Literal[0, 1] = Field(
        default=1,
        description="QoS of subscriptions and replies; 1: at-least-once (a learn message is "
        "acknowledged once in the WAL), 0: at-most-once.",
    )
    receive_maximum: int = Field(
        default=64,
        ge=1,
        le=65535,
        description="MQTT messages in flight at once; past that the broker holds the rest.",
    )
    session_expiry_s: int = Field(
        default=7 * 86400,
        ge=0,
        le=2**32 - 1,
        description="How long the broker keeps the session (and queued QoS 1 messages) "
        "while the daemon is away.",
    )
    reconnect_max_s: int = Field(
        default=60, ge=1, description="Reconnect backoff doubles from 1 s up to this."
    )
    model_interval_s: float = Field(
        default=1.0, gt=0, description="At most one retained `model` update per interval."
    )

    @property
    def device(self) -> str:
        return self.device_id or socket.gethostname()

    @property
    def client_id_or_default(self) -> str:
        return self.client_id or f"edgecl-{self.device}"

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("mqtt_tls_cert and mqtt_tls_key go together: set both or neither")
        return self


class DurabilitySettings(BaseModel):
    """How the WAL syncs and rotates, when checkpoints are taken, how long a shutdown may take."""

    model_config = ConfigDict(extra="forbid")

    wal_fsync: Literal["always", "group"] = "always"
    wal_group_ms: float = Field(default=5.0, gt=0)
    wal_segment_bytes: int = Field(
        default=16 << 20, ge=4096, description="A WAL segment file rotates at this size."
    )
    checkpoint_wal_ratio: float = Field(
        default=1.0,
        gt=0,
        description="Checkpoint once the WAL since the last checkpoint holds this many times "
        "that checkpoint's bytes (flash writes stay near the WAL's own).",
    )
    checkpoint_min_wal_bytes: int = Field(
        default=16 << 20,
        ge=0,
        description="...and at least this many WAL bytes: a restart replays at most about "
        "this much (or the ratio's worth).",
    )
    checkpoint_every_samples: int | None = Field(
        default=None, ge=1, description="Also checkpoint after this many samples; unset: off."
    )
    checkpoint_every_s: float | None = Field(
        default=None, gt=0, description="Also checkpoint this long after a change; unset: off."
    )
    checkpoint_on_stop: bool = Field(
        default=False,
        description="Checkpoint on every stop, due or not: a shorter replay at the next "
        "start, for one more checkpoint's flash writes per stop.",
    )
    checkpoint_keep: int = Field(default=2, ge=1)
    shutdown_timeout_s: float = Field(default=6.0, gt=0)  # drain (+ a due checkpoint) on SIGTERM


class ProbeSettings(BaseModel):
    """The probe set (edgecl/probe.py): held-back samples that measure forgetting."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description="Share of labelled samples held back, never learned, to measure "
        "forgetting; 0 turns the probe off.",
    )
    max_bytes: int = Field(
        default=512 << 10, ge=1024, description="Byte budget of the probe set (int8 latents)."
    )
    every: int = Field(
        default=500, ge=1, description="Re-score the probe after this many learned samples."
    )
    rescore_s: float = Field(
        default=2.0,
        gt=0,
        description="While learning, /stats shows the probe at most this stale: past it the "
        "held items are scored again for the reader (the probe itself is unchanged).",
    )


class QueueSettings(BaseModel):
    """The writer's queue and micro-batches, and the ids it remembers to drop retries."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(default=64, ge=1)
    max_batch: int = Field(default=64, ge=1)
    max_wait_ms: float = Field(
        default=5.0,
        ge=0,
        description="How long the writer waits to fill a batch with learn requests still being "
        "embedded (never for a lone one): fewer learning steps and fsyncs for concurrent "
        "clients; 0: it takes what is queued.",
    )
    recent_ids: int = Field(default=10_000, ge=0)


GROUPS: dict[str, type[BaseModel]] = {
    "queue": QueueSettings,
    "durability": DurabilitySettings,
    "probe": ProbeSettings,
    "mqtt": MqttSettings,
    "fleet": FleetSettings,
}

#: Flat name (YAML key, keyword, ``EDGECL_`` + upper case) → (group, field).
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "queue_size": ("queue", "size"),
    **{name: ("queue", name) for name in ("max_batch", "max_wait_ms", "recent_ids")},
    **{name: ("durability", name) for name in DurabilitySettings.model_fields},
    **{f"probe_{name}": ("probe", name) for name in ProbeSettings.model_fields},
    **{f"mqtt_{name}": ("mqtt", name) for name in MqttSettings.model_fields},
    **{f"fleet_{name}": ("fleet", name) for name in FleetSettings.model_fields},
}
FLAT_NAMES: dict[tuple[str, str], str] = {where: flat for flat, where in FLAT_KEYS.items()}

#: Groups a plain value names one field of: ``strategy: ncm`` is ``strategy: {name: ncm}``.
SHORTHANDS: dict[str, str] = {"strategy": "name", "store": "kind"}


def fold(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with flat keys moved into their groups (a flat key beats the nested one).

    >>> fold({"mqtt_host": "b", "mqtt": {"host": "a", "port": 1}, "port": 8080})
    {'mqtt': {'host': 'b', 'port': 1}, 'port': 8080}
    >>> fold({"strategy": "ncm"})
    {'strategy': {'name': 'ncm'}}
    """
    out = dict(data)
    # Expanded in each source before they merge, so `EDGECL_STRATEGY=ncm` keeps the options
    # the YAML file gives.
    for group, name in SHORTHANDS.items():
        if isinstance(out.get(group), str):
            out[group] = {name: out[group]}
    for flat, (group, name) in FLAT_KEYS.items():
        if flat not in out:
            continue
        nested = out.get(group, {})
        if isinstance(nested, BaseModel):
            nested = nested.model_dump(exclude_unset=True)
        if not isinstance(nested, Mapping):
            continue  # left flat: reported as an unknown key beside the group's own error
        out[group] = {**nested, name: out.pop(flat)}
    return out


class StrategySettings(BaseModel):
    """Which head strategy learns, and its options (passed to ``edgecl.strategies.create``).

    >>> StrategySettings(name="ncm", options={"temperature": 0.5}).name
    'ncm'
    """

    model_config = ConfigDict(extra="forbid")

    name: str = "slda"
    options: dict[str, Any] = Field(default_factory=dict)


#: ``store.kind``: the store the strategy's paper uses (none for slda, ncm, cwr_star, naive).
PAPER = "paper"


class StoreSettings(BaseModel):
    """The replay store (``kind`` ``paper``: the one the strategy's paper uses, which may be
    none; null: none), its byte budget and how latents are encoded.

    >>> StoreSettings(kind=None).kind is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    kind: str | None = PAPER
    max_bytes: int | None = Field(default=None, ge=1)
    encoding: str | None = "int8"
    options: dict[str, Any] = Field(default_factory=dict)

    def resolve(
        self, strategy: str, latent_shape: tuple[int, ...]
    ) -> tuple[str | None, dict[str, Any]]:
        """The store kind and its ``edgecl.replay.create`` options for ``strategy``: the
        paper's store and budget (``edgecl.strategies.paper_store``) unless named here; an
        unset budget is the paper's (1500 latents), or 16 MiB for a store named here.

        >>> StoreSettings().resolve("slda", (1280,)), StoreSettings().resolve("gdumb", (4,))
        ((None, {}), ('class_balanced', {'max_bytes': 24000, 'encoding': 'int8'}))
        """
        from edgecl import strategies

        kind, options = self.kind, dict(self.options)
        if kind == PAPER:
            paper = strategies.paper_store(strategy)
            if paper.kind is None:
                return None, {}
            kind, options = paper.kind, {**paper.options, **options}
            budget = paper.max_bytes(self.encoding or "int8", latent_shape)
        else:
            budget = 16 << 20
        if kind is None:
            return None, {}
        options["max_bytes"] = self.max_bytes if self.max_bytes is not None else budget
        if self.encoding is not None:
            options["encoding"] = self.encoding
        return kind, options
