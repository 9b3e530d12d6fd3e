"""A real mosquitto on 127.0.0.1 for tests and benchmarks: own config, data dir and free port.

Persistence is on, so QoS 1 messages queued for a persistent session survive a restart
(mosquitto writes its database when it stops on SIGTERM).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.net import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def available() -> bool:
    """Whether the mosquitto binary is installed (Debian package ``mosquitto``)."""
    return Path(MOSQUITTO).is_file()


class Mosquitto:
    """``with Mosquitto(tmp_path) as broker:`` runs a broker on ``broker.port``.

    ``extra`` lines go into the config file (e.g. a ``password_file`` or TLS files);
    :meth:`restart` stops it by PID and starts it again on the same port and data dir.
    """

    def __init__(self, root: Path, extra: list[str] | None = None, anonymous: bool = True) -> None:
        self.root = root
        self.port = free_port()
        self.data = root / "data"
        self.config = root / "mosquitto.conf"
        self.log = root / "mosquitto.log"
        self.extra = extra or []
        self.anonymous = anonymous
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence true",
            f"persistence_location {self.data}/",
            "autosave_interval 1",
            # The daemon's flow control relies on the broker holding its backlog.
            "max_queued_messages 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            *self.extra,
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", which cannot read our temp dirs.
            lines.insert(0, "user root")
        self.config.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited early:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen within {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID (mosquitto saves its database), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Probe:
    """A test MQTT 5 client: collects what arrives on ``topics``, publishes with properties.

    ``with Probe(port, ["edgecl/dev/status"]) as probe:`` returns once subscribed.
    """

    def __init__(
        self,
        port: int,
        topics: Sequence[str] = (),
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port
        self.topics = list(topics)
        self.messages: list[paho.MQTTMessage] = []  # arrived, not yet taken by expect()
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: paho.Client, userdata: Any, *args: Any) -> None:
        if self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])
        else:
            self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def __enter__(self) -> Probe:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the probe did not subscribe within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        timeout: float = 5.0,
    ) -> bool:
        """Publish; True once the broker acknowledged it (QoS 1) or it was sent (QoS 0).

        Waits for the connection first: while disconnected paho queues the message and
        reports failure at once, and a retry loop would pile up copies."""
        deadline = time.monotonic() + timeout
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        props = None
        if response_topic is not None or correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if response_topic is not None:
                props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=qos, properties=props)
        try:
            info.wait_for_publish(max(deadline - time.monotonic(), 0.1))
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def expect(
        self,
        topic: str,
        where: Callable[[paho.MQTTMessage], bool] = lambda m: True,
        timeout: float = 10.0,
    ) -> paho.MQTTMessage:
        """Take the first message on ``topic`` that satisfies ``where`` (others stay)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for i, message in enumerate(self.messages):
                    if message.topic == topic and where(message):
                        return self.messages.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [m.topic for m in self.messages]
                    raise AssertionError(f"no matching message on {topic!r} in {timeout} s: {seen}")
                self._arrived.wait(left)
