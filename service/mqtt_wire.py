"""MQTT wire format: the client's settings, topics, one received message, and payloads
decoded with the HTTP schema."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

import msgpack
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from service.bodies import BodyError, loads, validate
from service.schemas import ErrorItem
from service.settings import MqttSettings

Encoding = Literal["application/json", "application/msgpack"]
JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Topics:
    """The topics of one device, under ``{prefix}/{device_id}/``.

    >>> Topics.under("edgecl", "pi-7").predict_request
    'edgecl/pi-7/predict/request'
    """

    root: str
    learn: str
    predict_request: str
    predict_response: str
    status: str
    error: str
    model: str

    @classmethod
    def under(cls, prefix: str, device_id: str) -> Topics:
        root = f"{prefix}/{device_id}"
        return cls(
            root,
            f"{root}/learn",
            f"{root}/predict/request",
            f"{root}/predict/response",
            f"{root}/status",
            f"{root}/error",
            f"{root}/model",
        )


@dataclass(frozen=True)
class Inbound:
    """One received message and what answering and acknowledging it needs.

    ``generation`` names the connection it came on: an acknowledgement is only sent on
    that same connection (a later one may have reused its ``mid``).

    >>> Inbound("t", b"{}", qos=1, mid=7, generation=1).encoding
    'application/json'
    """

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    response_topic: str | None = None
    correlation: bytes | None = None
    content_type: str | None = None

    @property
    def declared(self) -> Encoding | None:
        """What the MQTT 5 content type says, if it names JSON or msgpack."""
        kind = (self.content_type or "").lower()
        if "msgpack" in kind:
            return MSGPACK
        return JSON if "json" in kind else None

    @property
    def encoding(self) -> Encoding:
        """What a reply is sent as: the content type's, else the payload's (see
        :func:`encoding_of`), else JSON."""
        try:
            return encoding_of(self)
        except Rejected:
            return JSON


#: First bytes of a msgpack map or array (fixmap, fixarray, array 16/32, map 16/32).
_MSGPACK_STARTS = frozenset([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])


def encoding_of(message: Inbound) -> Encoding:
    """The content type's encoding if it names one, else the payload's first byte says:
    ``{`` (or ``[``) is JSON, a msgpack map (or array) header is msgpack, anything else is
    ``Rejected`` with a sentence saying what was expected.

    >>> encoding_of(Inbound("t", b"hello", 1, 1, 1))
    Traceback (most recent call last):
    ...
    service.mqtt_wire.Rejected: payload is neither JSON (an object, starting with '{') nor \
msgpack (a map, whose first byte is 0x80-0x8f, 0xde or 0xdf): it starts with b'hello'; an \
MQTT 5 content type (application/json or application/msgpack) can say which it is
    """
    declared = message.declared
    if declared is not None:
        return declared
    payload = message.payload
    if payload.lstrip()[:1] in (b"{", b"["):
        return JSON
    if payload[:1] and payload[0] in _MSGPACK_STARTS:
        return MSGPACK
    if not payload.strip():
        raise Rejected("payload is empty: send a JSON object or a msgpack map")
    given = message.content_type
    hint = (
        f"its content type {given[:100]!r} names neither"
        if given
        else "an MQTT 5 content type (application/json or application/msgpack) can say which it is"
    )
    raise Rejected(
        "payload is neither JSON (an object, starting with '{') nor msgpack (a map, whose "
        f"first byte is 0x80-0x8f, 0xde or 0xdf): it starts with {payload[:16]!r}; {hint}"
    )


class Outbox(Protocol):
    """What handlers need from the connection."""

    @property
    def stopping(self) -> bool: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        correlation: bytes | None = None,
        content_type: str | None = None,
        retain: bool = False,
    ) -> None: ...

    def finish(self, message: Inbound, *, ack: bool) -> None: ...


class Rejected(Exception):
    """A message that can never be handled: reported on ``error`` and acknowledged."""

    def __init__(
        self, detail: str, errors: list[ErrorItem] | None = None, ids: list[str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail, self.errors, self.ids = detail, errors, ids


def check_response_topic(message: Inbound) -> None:
    """``Rejected`` unless the message's response topic (if any) can be published to.

    >>> check_response_topic(Inbound("t", b"", 1, 1, 1, response_topic="replies/#"))
    Traceback (most recent call last):
    ...
    service.mqtt_wire.Rejected: response topic 'replies/#' is not a topic one can publish to: \
it must be non-empty, without wildcards (+, #) or NUL, at most 65535 bytes
    """
    topic = message.response_topic
    if topic is None:
        return
    if (
        not topic
        or any(c in topic for c in "+#\0")
        or len(topic.encode("utf-8", "replace")) > 65535
    ):
        raise Rejected(
            f"response topic {topic[:200]!r} is not a topic one can publish to: it must be "
            "non-empty, without wildcards (+, #) or NUL, at most 65535 bytes"
        )


def decode(message: Inbound, max_samples: int = 256) -> Any:
    """The payload as plain data; ``Rejected`` when it is not valid JSON or msgpack (as
    :func:`encoding_of` decides), or holds more than ``max_samples`` samples could (see
    :func:`service.bodies.loads`).

    >>> decode(Inbound("t", b'{"a": 1}', 1, 1, 1))
    {'a': 1}
    >>> decode(Inbound("t", b"\\x81\\xa1a", 1, 1, 1, content_type="application/json"))
    Traceback (most recent call last):
    ...
    service.mqtt_wire.Rejected: payload is not valid JSON (as its content type \
'application/json' says): 'utf-8' codec can't decode byte 0x81 in position 0: invalid start byte
    """
    encoding = encoding_of(message)
    kind: Literal["json", "msgpack"] = "json" if encoding == JSON else "msgpack"
    try:
        return loads(message.payload, kind, max_samples, what="payload")
    except BodyError as exc:
        detail = exc.detail.replace("request", "message")
        if message.declared is not None and exc.status == 422:
            name = "JSON" if kind == "json" else "msgpack"
            said = f" (as its content type {message.content_type!r} says)"
            detail = detail.replace(f"not valid {name}", f"not valid {name}{said}", 1)
        raise Rejected(detail) from None


def encode(body: dict[str, Any], encoding: Encoding) -> bytes:
    if encoding == MSGPACK:
        packed: bytes = msgpack.packb(body)
        return packed
    return json.dumps(body).encode()


def parse(model: type[Model], data: Any, max_samples: int) -> Model:
    """Validate with the same models as HTTP (all or nothing)."""
    try:
        return validate(model, data, max_samples)
    except BodyError as exc:
        raise Rejected(exc.detail.replace("request", "message"), exc.errors) from None


def sample_count(data: Any) -> int:
    """How many samples a (possibly invalid) payload holds; at least 1 per message.

    >>> sample_count({"samples": [{}, {}]}), sample_count(b"junk")
    (2, 1)
    """
    samples = data.get("samples") if isinstance(data, dict) else None
    return max(1, len(samples)) if isinstance(samples, list) else 1


def sample_ids(data: Any) -> list[str]:
    """The sample ids a (possibly invalid) learn payload names, for error reports.

    >>> sample_ids({"samples": [{"id": "k1"}, {"label": "x"}, 3]})
    ['k1']
    """
    samples = data.get("samples") if isinstance(data, dict) else None
    if not isinstance(samples, list):
        return []
    return [s["id"] for s in samples if isinstance(s, dict) and isinstance(s.get("id"), str)]


def properties(packet_type: int) -> Properties:
    """MQTT 5 properties for a packet type (``PacketTypes.CONNECT``, ``PUBLISH``)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def new_client(settings: MqttSettings, will_topic: str) -> paho.Client:
    """A paho client as the settings say: MQTT 5, fixed client id, manual acknowledgement,
    credentials, TLS, last will ``offline`` (retained) and reconnect backoff."""
    s = settings
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.client_id_or_default,
        protocol=paho.MQTTv5,
        manual_ack=True,
    )
    client.enable_logger(logging.getLogger("edgecl.mqtt.paho"))
    if s.username is not None:
        password = None if s.password is None else s.password.get_secret_value()
        client.username_pw_set(s.username, password)
    if s.tls or s.tls_ca is not None or s.tls_cert is not None:
        client.tls_set(
            ca_certs=None if s.tls_ca is None else str(s.tls_ca),
            certfile=None if s.tls_cert is None else str(s.tls_cert),
            keyfile=None if s.tls_key is None else str(s.tls_key),
        )
    client.will_set(will_topic, b"offline", qos=1, retain=True)
    client.reconnect_delay_set(1, s.reconnect_max_s)  # doubles up to the max
    client.max_queued_messages_set(1000)  # replies kept while disconnected
    return client
