"""Every way a use case can fail, and one table of what each means for an HTTP reply, an MQTT
message and the metrics.

Modules raise these; transports look the exception up with :func:`outcome` instead of each
keeping its own mapping.

>>> outcome(SampleError(0, "image bytes are empty")).status
422
>>> outcome(QueueFullError("full")).ack, outcome(QueueFullError("full")).retry_after
(False, True)
>>> outcome(NotFittedError("nothing yet")).status
409
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecl.learner import NotFittedError

__all__ = [
    "ClassLimitError",
    "NotAcceptingError",
    "NotFittedError",
    "Outcome",
    "QueueFullError",
    "RetrainBusyError",
    "RetrainUnsupportedError",
    "SampleError",
    "StorageUnavailableError",
    "UnknownJobError",
    "outcome",
]


class SampleError(ValueError):
    """A sample of a request is unusable; ``index`` says which one.

    >>> str(SampleError(3, "image bytes are empty"))
    'samples[3]: image bytes are empty'
    """

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"samples[{index}]: {message}")
        self.index = index
        self.message = message


class ClassLimitError(SampleError):
    """A sample's label would be one class more than the daemon may hold."""


class QueueFullError(RuntimeError):
    """The learn queue holds as many requests as it may; the client should retry later."""


class NotAcceptingError(RuntimeError):
    """The service is starting or stopping."""


class StorageUnavailableError(RuntimeError):
    """The write-ahead log could not store or sync the samples (disk full, read-only)."""


class RetrainUnsupportedError(RuntimeError):
    """The strategy cannot retrain from memory, or there is nothing to retrain from."""


class RetrainBusyError(RuntimeError):
    """Another retrain job is still running."""


class UnknownJobError(LookupError):
    """No retrain job has that id (or it is long forgotten)."""


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
    (NotFittedError, Outcome(409, "not_fitted", ack=True)),
    (RetrainUnsupportedError, Outcome(409, "retrain_unsupported", ack=True)),
    (RetrainBusyError, Outcome(409, "retrain_busy", ack=True)),
    (UnknownJobError, Outcome(404, "unknown_job", ack=True)),
    (ValueError, Outcome(422, "invalid", ack=True)),  # the request itself is bad
)
#: Anything else is a bug: it fails that request alone and is never redelivered.
BUG = Outcome(500, "error", ack=True)


def outcome(exc: BaseException) -> Outcome:
    """The table's row for ``exc``; an exception with its own ``status`` (a body too large,
    413) keeps it."""
    for kind, result in _TABLE:
        if isinstance(exc, kind):
            status = getattr(exc, "status", None)
            if isinstance(status, int) and kind is ValueError:
                return Outcome(status, result.reason, result.ack, result.retry_after)
            return result
    return BUG
