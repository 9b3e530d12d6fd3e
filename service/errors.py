"""One table: what a failure means for an HTTP reply, an MQTT message and the metrics.

Transports look an exception up here instead of each keeping its own mapping.

>>> outcome(ValueError("samples[0].label: ...")).status
422
>>> outcome(QueueFullError("full")).ack, outcome(QueueFullError("full")).retry_after
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

from service.batching import NotAcceptingError, QueueFullError
from service.writer import ClassLimitError, StorageUnavailableError


@dataclass(frozen=True)
class Outcome:
    """``status``: the HTTP status; ``reason``: the ``reason`` label of rejected samples;
    ``ack``: whether an MQTT message is acknowledged (it can never succeed) or left
    unacknowledged for the broker to deliver again; ``retry_after``: HTTP Retry-After."""

    status: int
    reason: str
    ack: bool
    retry_after: bool = False


_TABLE: tuple[tuple[type[BaseException], Outcome], ...] = (
    (QueueFullError, Outcome(503, "queue_full", ack=False, retry_after=True)),
    (NotAcceptingError, Outcome(503, "not_accepting", ack=False, retry_after=True)),
    (StorageUnavailableError, Outcome(507, "storage_unavailable", ack=False)),
    (ClassLimitError, Outcome(422, "class_limit", ack=True)),
    (ValueError, Outcome(422, "invalid", ack=True)),  # the request itself is bad
)
#: Anything else is a bug: it fails that request alone and is never redelivered.
_BUG = Outcome(500, "error", ack=True)


def outcome(exc: BaseException) -> Outcome:
    for kind, result in _TABLE:
        if isinstance(exc, kind):
            return result
    return _BUG
