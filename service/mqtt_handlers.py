"""MQTT messages → the use cases: decode, validate with the HTTP schema, call, encode.

The bridge (service/mqtt.py) owns the connection; this module only turns one received
message into a call of :mod:`service.usecases` and a reply, and says when the message may
be acknowledged (the table in :mod:`service.errors` says which failures can never succeed).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from pydantic import BaseModel

from service.errors import BUG, NotAcceptingError, QueueFullError, outcome
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
from service.schemas import ErrorItem, LearnReply, LearnRequest, PredictRequest
from service.usecases import PendingLearn, UseCases

log = logging.getLogger("edgecl.mqtt")


class Handlers:
    """The topic → handler table; each handler finishes its message exactly once.

    ``learn`` acknowledges once the runtime's future says the samples are in the WAL;
    while the learn queue is full it waits (the message stays unacknowledged, so the
    bridge stops reading and the broker holds the rest).
    """

    def __init__(
        self,
        cases: UseCases,
        topics: Topics,
        outbox: Outbox,
        *,
        max_bytes: int,
        max_samples: int,
    ) -> None:
        self.cases, self.topics, self.outbox = cases, topics, outbox
        self.max_bytes, self.max_samples = max_bytes, max_samples
        self.rejected = 0
        self.queue_full_waits = 0
        self.model_sent: int | None = None  # the model version last said on ``model``

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
        except Rejected as exc:  # never reached the use case: counted here
            self.cases.rejected("mqtt", ValueError(exc.detail), sample_count(data))
            self.reject(message, exc.detail, exc.errors, exc.ids or ids)
            return
        try:
            future = self._submit(self.cases.embed_learn(body, "mqtt"))
        except Exception as exc:
            self._failed(message, exc, ids)
            return
        if future is None:  # stopping: the broker redelivers it to the next session
            self.outbox.finish(message, ack=False)
            return
        future.add_done_callback(lambda f: self._learned(message, ids, f))

    def _submit(self, pending: PendingLearn) -> Future[LearnReply] | None:
        delay = 0.001
        while not self.outbox.stopping:
            try:
                # Backpressure: hold the message unacknowledged until the queue has room
                # (looking first, so that waiting is not counted as a rejection).
                if not self.cases.has_room:
                    raise QueueFullError
                return self.cases.submit(pending)
            except QueueFullError:
                self.queue_full_waits += 1
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except NotAcceptingError:
                return None
        return None

    def _learned(self, message: Inbound, ids: list[str], future: Future[LearnReply]) -> None:
        exc = future.exception()
        if exc is not None:
            self._failed(message, exc, ids)
            return
        # The samples are in the WAL: acknowledge first, so a reply that cannot be
        # sent never holds the message (nor its in-flight slot).
        self.outbox.finish(message, ack=True)
        if message.response_topic:  # the same reply as POST /learn, for who asks
            self._reply(message, message.response_topic, future.result())

    def _failed(self, message: Inbound, exc: BaseException, ids: list[str] | None = None) -> None:
        """Finish a message whose use case failed, as the error table says."""
        result = outcome(exc)
        if result is BUG:  # a bug must not kill the worker, nor loop on redelivery
            log.error("handling a message on %s failed", message.topic, exc_info=exc)
            self.reject(message, f"internal error: {exc}", ids=ids)
        elif result.ack:  # a bad sample: it would fail again on every redelivery
            self.reject(message, str(exc), getattr(exc, "errors", None), ids)
        else:  # the broker delivers it again after the next reconnect
            try:
                self._publish_error(message, f"not stored, kept unacknowledged: {exc}", None, ids)
            finally:
                self.outbox.finish(message, ack=False)

    # -- predict ----------------------------------------------------------------------
    def predict(self, message: Inbound) -> None:
        try:
            check_response_topic(message)
            body = parse(PredictRequest, self._decode(message), self.max_samples)
        except Rejected as exc:
            self.reject(message, exc.detail, exc.errors)
            return
        try:
            reply = self.cases.predict(body)
        except Exception as exc:
            self._failed(message, exc)
            return
        self._reply(message, message.response_topic or self.topics.predict_response, reply)
        self.outbox.finish(message, ack=True)

    def _reply(self, message: Inbound, topic: str, reply: BaseModel) -> None:
        self.outbox.publish(
            topic,
            encode(reply.model_dump(mode="json"), message.encoding),
            correlation=message.correlation,
            content_type=message.encoding,
        )

    def publish_model(self) -> None:
        """The retained ``model`` topic, when the model changed since it was last said."""
        state = self.cases.model_state()
        if state.model_version == self.model_sent:
            return
        body = state.model_dump(mode="json")
        self.outbox.publish(
            self.topics.model, json.dumps(body).encode(), content_type=JSON, retain=True
        )
        self.model_sent = state.model_version

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
