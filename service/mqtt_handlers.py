"""MQTT messages → the runtime: decode, validate with the HTTP schema, call, encode.

The bridge (service/mqtt.py) owns the connection; this module only turns one received
message into runtime calls and replies, and says when the message may be acknowledged.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from edgecl.learner import NotFittedError
from service.errors import outcome
from service.inputs import SampleError
from service.mqtt_wire import (
    JSON,
    Inbound,
    Outbox,
    Rejected,
    Topics,
    check_response_topic,
    decode,
    encode,
    parse,
    sample_count,
    sample_ids,
)
from service.runtime import LearnerRuntime, LearnResult, NotAcceptingError, QueueFullError
from service.schemas import (
    ErrorItem,
    LearnReply,
    LearnRequest,
    PredictionOut,
    PredictReply,
    PredictRequest,
    ScoredLabel,
)

log = logging.getLogger("edgecl.mqtt")

NOTHING_LEARNED = "nothing has been learned yet; publish labelled samples on learn first"


class Handlers:
    """The topic → handler table; each handler finishes its message exactly once.

    ``learn`` acknowledges once the runtime's future says the samples are in the WAL;
    while the learn queue is full it waits (the message stays unacknowledged, so the
    bridge stops reading and the broker holds the rest).
    """

    def __init__(
        self,
        runtime: LearnerRuntime,
        topics: Topics,
        outbox: Outbox,
        *,
        max_bytes: int,
        max_samples: int,
        on_rejected: Callable[[int], None] | None = None,
    ) -> None:
        self.runtime, self.topics, self.outbox = runtime, topics, outbox
        self.max_bytes, self.max_samples = max_bytes, max_samples
        self.on_rejected = on_rejected  # learn samples turned away before the runtime
        self.rejected = 0
        self.queue_full_waits = 0

    @property
    def table(self) -> dict[str, Callable[[Inbound], None]]:
        return {self.topics.learn: self.learn, self.topics.predict_request: self.predict}

    # -- learn ------------------------------------------------------------------------
    def learn(self, message: Inbound) -> None:
        ids: list[str] = []
        data: Any = None
        try:
            data = self._decode(message)
            ids = sample_ids(data)
            check_response_topic(message)
            body = parse(LearnRequest, data, self.max_samples)
            z, raw = self.runtime.embed_for_learning([s.to_input() for s in body.samples])
            labels = [s.label for s in body.samples]
            future = self._submit(z, labels, [s.id for s in body.samples], raw)
        except Exception as exc:
            if isinstance(exc, Rejected):
                self.reject(message, exc.detail, exc.errors, exc.ids or ids)
            elif isinstance(exc, SampleError):
                self.reject(message, str(exc), ids=ids)
            else:  # a bug must not kill the worker, nor loop on redelivery
                log.exception("handling a learn message failed")
                self.reject(message, f"internal error: {exc}", ids=ids)
            if self.on_rejected is not None:
                self.on_rejected(sample_count(data))
        else:
            if future is None:  # stopping: the broker redelivers it to the next session
                self.outbox.finish(message, ack=False)
                return
            future.add_done_callback(lambda f: self._learned(message, ids, f))

    def _submit(
        self, z: Any, labels: list[Any], ids: list[str | None], raw: Any = None
    ) -> Future[LearnResult] | None:
        delay, queue = 0.001, self.runtime.queue
        while not self.outbox.stopping:
            try:
                # Backpressure: hold the message unacknowledged until the queue has room
                # (looking first, so that waiting is not counted as a rejection).
                if len(queue) >= queue.capacity:
                    raise QueueFullError
                return self.runtime.submit_learn(z, labels, ids, source="mqtt", inputs=raw)
            except QueueFullError:
                self.queue_full_waits += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except NotAcceptingError:
                return None
            except ValueError as exc:
                raise Rejected(str(exc)) from None
        return None

    def _learned(self, message: Inbound, ids: list[str], future: Future[LearnResult]) -> None:
        exc = future.exception()
        if exc is None:
            # The samples are in the WAL: acknowledge first, so a reply that cannot be
            # sent never holds the message (nor its in-flight slot).
            self.outbox.finish(message, ack=True)
            if message.response_topic:  # the same reply as POST /learn, for who asks
                result = future.result()
                reply = LearnReply(
                    accepted=result.accepted,
                    duplicates=result.duplicates,
                    model_version=result.model_version,
                    classes=result.classes,
                )
                self.outbox.publish(
                    message.response_topic,
                    encode(reply.model_dump(mode="json"), message.encoding),
                    correlation=message.correlation,
                    content_type=message.encoding,
                )
            return
        if outcome(exc).ack:  # a bad sample: it would fail again on every redelivery
            self.reject(message, str(exc), ids=ids)
            return
        # Not acknowledged: the broker delivers it again after the next reconnect.
        try:
            self._publish_error(message, f"not stored, kept unacknowledged: {exc}", None, ids)
        finally:
            self.outbox.finish(message, ack=False)

    # -- predict ----------------------------------------------------------------------
    def predict(self, message: Inbound) -> None:
        try:
            check_response_topic(message)
            body = parse(PredictRequest, self._decode(message), self.max_samples)
            if not self.runtime.has_classes:
                raise Rejected(NOTHING_LEARNED)
            z = self.runtime.embed([s.to_input() for s in body.samples])
            result = self.runtime.predict(z, body.top_k)
            reply = PredictReply(
                predictions=[
                    PredictionOut(
                        label=p.label,
                        score=p.score,
                        top_k=[ScoredLabel(label=label, score=s) for label, s in p.top_k],
                    )
                    for p in result.predictions
                ],
                model_version=result.model_version,
            )
            topic = message.response_topic or self.topics.predict_response
            self.outbox.publish(
                topic,
                encode(reply.model_dump(mode="json"), message.encoding),
                correlation=message.correlation,
                content_type=message.encoding,
            )
        except Rejected as exc:
            self.reject(message, exc.detail, exc.errors)
        except NotFittedError:
            self.reject(message, NOTHING_LEARNED)
        except ValueError as exc:  # SampleError, or a response topic with wildcards
            self.reject(message, str(exc))
        except Exception as exc:
            log.exception("handling a predict message failed")
            self.reject(message, f"internal error: {exc}")
        else:
            self.outbox.finish(message, ack=True)

    def model_state(self) -> dict[str, Any]:
        """What the retained ``model`` topic says."""
        stats = self.runtime.stats()
        return {
            "model_version": stats.model_version,
            "classes": list(stats.classes),
            "samples_learned": stats.samples_learned,
            "strategy": stats.strategy["name"],
        }

    # -- errors -----------------------------------------------------------------------
    def _decode(self, message: Inbound) -> Any:
        if len(message.payload) > self.max_bytes:
            raise Rejected(
                f"payload of {len(message.payload)} bytes is larger than the limit of "
                f"{self.max_bytes} bytes"
            )
        return decode(message, self.max_samples)

    def reject(
        self,
        message: Inbound,
        detail: str,
        errors: list[ErrorItem] | None = None,
        ids: list[str] | None = None,
    ) -> None:
        """Report on ``error`` and acknowledge: a bad message never becomes good."""
        self.rejected += 1
        try:
            self._publish_error(message, detail, errors, ids)
        finally:
            self.outbox.finish(message, ack=True)

    def _publish_error(
        self,
        message: Inbound,
        detail: str,
        errors: list[ErrorItem] | None,
        ids: list[str] | None,
    ) -> None:
        log.info("rejected a message on %s: %s", message.topic, detail)
        body: dict[str, Any] = {"topic": message.topic, "detail": detail}
        if errors:
            body["errors"] = [e.model_dump() for e in errors]
        if ids:
            body["ids"] = ids
        if message.correlation is not None:
            body["correlation_data"] = base64.b64encode(message.correlation).decode()
        self.outbox.publish(
            self.topics.error,
            json.dumps(body).encode(),
            correlation=message.correlation,
            content_type=JSON,
        )
