"""MQTT transport: learn and predict over a broker, at-least-once, with availability.

One paho-mqtt 2.x client (MQTT 5, its own network thread, reconnect with exponential
backoff) under ``{prefix}/{device_id}/``; handlers live in service/mqtt_handlers.py.

At-least-once: a fixed client id, a persistent session (``clean_start=False`` and a session
expiry), QoS 1 and manual acknowledgement: a ``learn`` message is acknowledged only when the
runtime's future says its samples are in the WAL. A message not acknowledged is delivered
again after a reconnect; sample ids make that harmless.

Flow control: at most ``mqtt_receive_maximum`` messages are in flight (received, not yet
finished). The broker is told so (MQTT 5 Receive Maximum); should it send more anyway, the
network thread stops reading until the window opens, so the broker holds the backlog.

Availability: ``status`` is a retained ``online``, with ``offline`` as last will (and said on
a clean stop). ``model`` (retained: version, classes) is polled, not hooked: it is published
when the model version changed, at most once per ``mqtt_model_interval_s``, so learning over
HTTP, retrains and restores show too.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from service.mqtt_handlers import Handlers
from service.mqtt_wire import Inbound, Topics, new_client, properties
from service.settings import Settings
from service.usecases import UseCases

__all__ = ["MqttBridge", "MqttObserver", "Topics"]

log = logging.getLogger("edgecl.mqtt")


class MqttObserver(Protocol):
    """What the bridge reports (the app's Telemetry): the connection state (the use cases
    count samples in and out)."""

    def set_mqtt_connected(self, connected: bool) -> None: ...


class MqttBridge:
    """Connects the use cases of one runtime to a broker; :meth:`start` returns at once and
    the client keeps (re)connecting in the background.

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> from service.runtime import LearnerRuntime
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> settings = Settings(mqtt_host="localhost", mqtt_device_id="pi-7")
    >>> bridge = MqttBridge(settings, UseCases(rt))
    >>> bridge.topics.learn, bridge.client_id, bridge.connected
    ('edgecl/pi-7/learn', 'edgecl-pi-7', False)
    """

    def __init__(
        self,
        settings: Settings,
        cases: UseCases,
        observer: MqttObserver | None = None,
    ) -> None:
        if settings.mqtt.host is None:
            raise ValueError("mqtt_host is not set")
        self.config, self.cases, self.host = settings.mqtt, cases, settings.mqtt.host
        self.topics = Topics.under(settings.mqtt.prefix, settings.mqtt.device)
        self.client_id = settings.mqtt.client_id_or_default
        self.qos = settings.mqtt.qos
        self.window = settings.mqtt.receive_maximum
        self.handlers = Handlers(
            cases,
            self.topics,
            self,
            max_bytes=settings.max_body_bytes,
            max_samples=settings.max_samples_per_request,
        )
        self.observer = observer
        self.counters = dict.fromkeys(
            ("received", "acknowledged", "connects", "refused", "max_in_flight"), 0
        )
        self._lock = threading.Condition()
        self._generation = 0  # bumped on every connect and disconnect
        self._connected = False
        self._stopping = False
        self._in_flight = 0
        self._done = threading.Event()
        self._queues: dict[str, queue.Queue[Inbound | None]] = {}
        self._threads: list[threading.Thread] = []
        self.client: paho.Client | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers and the network thread (which connects, with retries)."""
        if self.client is not None:
            return
        self.client = client = new_client(self.config, self.topics.status)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        for topic, handler in self.handlers.table.items():
            q: queue.Queue[Inbound | None] = queue.Queue()
            self._queues[topic] = q
            self._spawn(f"edgecl-mqtt-{topic.rsplit('/', 1)[-1]}", self._work, q, handler)
        self._spawn("edgecl-mqtt-model", self._model_loop)
        props = properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.window
        s = self.config
        client.connect_async(self.host, s.port, s.keepalive, clean_start=False, properties=props)
        client.loop_start()
        where = f"{self.host}:{s.port} as {self.client_id!r}, topic root {self.topics.root}/"
        log.info("MQTT: connecting to %s; subscribing to %s", where, ", ".join(self._queues))

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop taking messages, let submitted ones reach the WAL and be acknowledged,
        publish ``offline`` and disconnect. Call before the runtime stops."""
        client = self.client
        if client is None:
            return
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._done.set()
        for q in self._queues.values():
            q.put(None)
        for thread in self._threads:
            thread.join(timeout / 3)
        for q in self._queues.values():  # anything put after a worker's last look
            while not q.empty():
                if (leftover := q.get_nowait()) is not None:
                    self.finish(leftover, ack=False)
        with self._lock:  # futures still resolve: the runtime is running
            self._lock.wait_for(lambda: self._in_flight == 0, timeout / 3)
        if self._connected:
            info = client.publish(self.topics.status, b"offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout / 3)
            except (ValueError, RuntimeError) as exc:
                log.warning("MQTT: could not publish offline: %s", exc)
        client.disconnect()
        client.loop_stop()
        self.client = None

    # -- paho callbacks (network thread) ----------------------------------------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.counters["refused"] += 1
            log.warning("MQTT: the broker refused the connection: %s", reason)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
        if self.observer is not None:
            self.observer.set_mqtt_connected(True)
        self.counters["connects"] += 1
        self.handlers.model_sent = None  # a new session: say the model state again
        log.info("MQTT: connected (session present: %s)", flags.session_present)
        options = SubscribeOptions(
            qos=self.qos, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB
        )
        client.subscribe([(topic, options) for topic in self._queues])
        client.publish(self.topics.status, b"online", qos=1, retain=True)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        with self._lock:
            self._generation += 1
            self._connected = False
            self._lock.notify_all()
        if self.observer is not None:
            self.observer.set_mqtt_connected(False)
        if not self._stopping:
            log.warning("MQTT: lost the broker (%s); reconnecting with backoff", reason)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._receive(message)
        except Exception:  # an exception here would end paho's network thread
            log.exception("MQTT: could not take a message")

    def _receive(self, message: paho.MQTTMessage) -> None:
        props = message.properties
        with self._lock:
            if self._stopping:
                return  # not acknowledged: delivered again to the next session
            inbound = Inbound(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                mid=message.mid,
                generation=self._generation,
                response_topic=getattr(props, "ResponseTopic", None),
                correlation=getattr(props, "CorrelationData", None),
                content_type=getattr(props, "ContentType", None),
            )
            self._in_flight += 1
            self.counters["received"] += 1
            self.counters["max_in_flight"] = max(self.counters["max_in_flight"], self._in_flight)
        target = self._queues.get(inbound.topic)
        if target is None:
            self.finish(inbound, ack=True)
            return
        target.put(inbound)
        # Stop reading while the window is full: brokers do not all honour Receive Maximum.
        with self._lock:
            while self._in_flight >= self.window and not self._stopping:
                self._lock.wait(0.5)

    # -- what handlers call -----------------------------------------------------------
    def finish(self, message: Inbound, *, ack: bool) -> None:
        """The message is done with; acknowledge it on the connection it came on."""
        with self._lock:
            same = self._connected and message.generation == self._generation
            if ack and message.qos > 0 and same and self.client is not None:
                self.client.ack(message.mid, message.qos)
                self.counters["acknowledged"] += 1
            self._in_flight -= 1
            self._lock.notify_all()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        correlation: bytes | None = None,
        content_type: str | None = None,
        retain: bool = False,
    ) -> None:
        client = self.client
        if client is None:
            return
        props = None
        if correlation is not None or content_type is not None:
            props = properties(PacketTypes.PUBLISH)
            if correlation is not None:
                props.CorrelationData = correlation
            if content_type is not None:
                props.ContentType = content_type
        try:
            info = client.publish(topic, payload, qos=self.qos, retain=retain, properties=props)
        except (ValueError, TypeError) as exc:  # e.g. a topic with wildcards: never raise
            log.warning("MQTT: could not publish on %r: %s", topic[:200], exc)
            return
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT: could not publish on %s: %s", topic, paho.error_string(info.rc))

    # -- workers ----------------------------------------------------------------------
    def _work(self, q: queue.Queue[Inbound | None], handler: Callable[[Inbound], None]) -> None:
        while (message := q.get()) is not None:
            if self._stopping:
                self.finish(message, ack=False)
                continue
            handler(message)

    def _model_loop(self) -> None:
        """Publish the retained ``model`` state when it changed, at most once per interval
        (covers learning from every transport, retrains and restores)."""
        while not self._done.wait(self.config.model_interval_s):
            try:
                if self._connected:
                    self.handlers.publish_model()
            except Exception:
                log.exception("MQTT: could not publish the model state")
