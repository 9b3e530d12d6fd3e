"""The HTTP side of the daemon's settings: address, auth, and the limits that bound what
one client can make the daemon hold (bodies, pixels, connections, time)."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, Field, SecretStr, model_validator

#: Defaults of ``decode_pixels`` and ``max_pixels_per_request`` (also the Embedder's).
DEFAULT_DECODE_PIXELS = 4_000_000
DEFAULT_REQUEST_PIXELS = 64_000_000


class HttpSettings(BaseModel):
    """Fields of :class:`service.settings.Settings` (``EDGECL_HOST``, ...).

    >>> HttpSettings().max_connections
    1000
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    # Security and limits.
    api_token: SecretStr | None = None
    published_addr: str | None = Field(
        default=None,
        description="The address clients reach the daemon on when a port mapping stands "
        "between (compose sets it from DEPLOY_HTTP_ADDR); unset: `host`. Reachable beyond "
        "loopback without `api_token`, the daemon refuses to start.",
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="Serve beyond loopback without `api_token` anyway (a network you trust).",
    )
    max_body_bytes: int = Field(default=8 << 20, ge=1024)
    max_samples_per_request: int = Field(default=256, ge=1)
    decode_pixels: int = Field(
        default=DEFAULT_DECODE_PIXELS,
        ge=1_000_000,
        description="Pixels decoded at full size at once, over all requests: a PNG, WebP, "
        "BMP, GIF or TIFF image with more is refused (422), a JPEG is decoded reduced. "
        "Bounds the memory of decoding (a lossless WebP takes about 16 bytes per pixel).",
    )
    max_pixels_per_request: int = Field(
        default=DEFAULT_REQUEST_PIXELS,
        ge=1_000_000,
        description="Pixels the images of one request may decode to in all (422 past it).",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open HTTP connections at most: one more is closed as soon as it is "
        "accepted, and requests are answered 503 while the limit is reached. Keeps file "
        "descriptors for the WAL, checkpoints and MQTT under systemd's LimitNOFILE=4096.",
    )
    keepalive_timeout_s: float = Field(
        default=5.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has, from connecting or from its previous reply, to send "
        "a whole request head; then its connection is closed.",
    )
    body_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time a client has to send a whole request body; then it gets 408 and "
        "its connection is closed.",
    )

    def exposure_problem(self) -> str | None:
        """Why serving as configured would open the API to the network, or None.

        >>> HttpSettings(host="0.0.0.0").exposure_problem() is not None
        True
        >>> HttpSettings(host="0.0.0.0", published_addr="127.0.0.1").exposure_problem()
        >>> HttpSettings(host="0.0.0.0", api_token="s3cret").exposure_problem()
        """
        addr = self.published_addr or self.host
        if self.api_token is not None or self.allow_unauthenticated or loopback(addr):
            return None
        return (
            f"refusing to serve on {addr} without an API token: anyone who reaches it could "
            "teach and query the model. Set EDGECL_API_TOKEN (see the README, Security), "
            "listen on 127.0.0.1, or set EDGECL_ALLOW_UNAUTHENTICATED=true on a network you "
            "trust"
        )

    @model_validator(mode="after")
    def _token_not_blank(self) -> HttpSettings:
        # An empty token would match an empty "Bearer " header: that is no auth at all.
        if self.api_token is not None and not self.api_token.get_secret_value().strip():
            raise ValueError("api_token is empty; unset EDGECL_API_TOKEN to turn auth off")
        return self


def loopback(addr: str) -> bool:
    """Whether ``addr`` (an IP address or host name) only reaches this machine.

    >>> loopback("127.0.0.1"), loopback("localhost"), loopback("::1"), loopback("0.0.0.0")
    (True, True, True, False)
    """
    if addr.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable
