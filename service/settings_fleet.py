"""The fleet's settings group (``fleet_*``; kept apart from service/settings_groups.py for size)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class FleetSettings(BaseModel):
    """Joining a fleet over Flower (``pip install edgecl[fleet]``): off unless ``enabled``.

    >>> FleetSettings(enabled=True, server="fleet.local:9092").id
    'default'
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Join the fleet's rounds (needs `flwr`).")
    server: str = Field(
        default="127.0.0.1:9092",
        pattern=r"^\S+:\d{1,5}$",
        description="The fleet server (`edgecl fleet server`), host:port.",
    )
    tls: bool = Field(
        default=False, description="TLS to the server with the system CAs (implied by a CA file)."
    )
    tls_ca: Path | None = Field(default=None, description="CA file that signed the server.")
    id: str = Field(
        default="default",
        pattern=r"^[\w.-]{1,64}$",
        description="Which fleet this device belongs to; the server refuses another fleet's.",
    )
    device_id: str | None = Field(
        default=None,
        pattern=r"^[\w.-]{1,64}$",
        description="This device's id in the fleet; unset: one made up once and kept in the "
        "data dir.",
    )
    reconnect_s: float = Field(
        default=5.0, gt=0, description="Seconds between attempts to join the server again."
    )
