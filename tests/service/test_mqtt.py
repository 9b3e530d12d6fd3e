"""MQTT against a real mosquitto on 127.0.0.1: learn, predict, at-least-once, availability,
flow control, malformed payloads, passwords and TLS."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.packettypes import PacketTypes

from service.app import create_app
from service.bootstrap import build_runtime
from service.mqtt import MqttBridge
from service.mqtt_wire import Topics, properties
from service.settings import MqttSettings, Settings
from tests.mosquitto import Mosquitto, Probe, available
from tests.service.conftest import make_settings, sample
from tests.service.daemon import Daemon, identity_env
from tests.service.test_image_formats import LEFT, RIGHT, encoded, gray, png_claiming

# CI installs mosquitto (.ci/run): there a missing broker fails instead of skipping.
pytestmark = pytest.mark.skipif(
    not available() and not os.environ.get("CI"), reason="mosquitto is not installed"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One broker for the tests that do not restart it; each test has its own device id."""
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


def device() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


def mqtt_settings(port: int, dev: str, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(
        mqtt_host="127.0.0.1",
        mqtt_port=port,
        mqtt_device_id=dev,
        mqtt_model_interval_s=0.1,
        probe_share=0,  # the tests count learned samples: hold none back
        data_dir=tmp_path / "data",
        **overrides,
    )


@contextmanager
def running(settings: Settings, durable: bool = False) -> Iterator[TestClient]:
    """The app in-process (lifespan included: runtime, then the MQTT bridge)."""
    with TestClient(create_app(settings, build_runtime(settings, durable=durable))) as client:
        yield client


def bridge(client: TestClient) -> MqttBridge:
    mqtt: MqttBridge = client.app.state.mqtt  # type: ignore[attr-defined]
    return mqtt


def wait_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def learned(client: TestClient | str) -> int:
    if isinstance(client, str):
        n: int = httpx.get(f"{client}/stats", timeout=5).json()["samples_learned"]
        return n
    count: int = client.get("/stats").json()["samples_learned"]
    return count


def learn_body(*samples: dict[str, Any]) -> bytes:
    return json.dumps({"samples": list(samples)}).encode()


def is_payload(text: bytes) -> Callable[[Any], bool]:
    return lambda m: bool(m.payload == text)


def correlated(data: bytes) -> Callable[[Any], bool]:
    return lambda m: bool(getattr(m.properties, "CorrelationData", None) == data)


def test_learn_over_mqtt_then_predict_over_http_and_mqtt(broker: Mosquitto, tmp_path: Path) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    watched = [t.status, t.predict_response, t.model, t.error, "replies/#"]
    settings = mqtt_settings(broker.port, dev, tmp_path)
    with Probe(broker.port, watched) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        assert probe.publish(t.learn, learn_body(sample("a", 0, sid="k1"), sample("b", 1)))
        packed = msgpack.packb({"samples": [sample("c", 2, sid="k3")]})
        assert probe.publish(t.learn, packed)
        wait_until(lambda: learned(client) == 3, "3 samples learned")

        http = client.post("/predict", json={"samples": [{"features": [0, 1, 0, 0]}]})
        assert http.json()["predictions"][0]["label"] == "b"

        # MQTT 5 request/response: the reply goes to the response topic, with its correlation.
        request = json.dumps({"samples": [{"features": [1, 0, 0, 0]}], "top_k": 2}).encode()
        probe.publish(t.predict_request, request, response_topic="replies/x", correlation=b"r1")
        reply = probe.expect("replies/x")
        assert reply.properties.CorrelationData == b"r1"  # type: ignore[union-attr]
        assert reply.properties.ContentType == "application/json"  # type: ignore[union-attr]
        body = json.loads(reply.payload)
        assert body["predictions"][0]["label"] == "a" and len(body["predictions"][0]["top_k"]) == 2

        # No response topic: predict/response; a msgpack request gets a msgpack reply.
        probe.publish(t.predict_request, msgpack.packb({"samples": [{"features": [0, 0, 1, 0]}]}))
        plain = msgpack.unpackb(probe.expect(t.predict_response).payload)
        assert plain["predictions"][0]["label"] == "c" and plain["model_version"] >= 1

        model = probe.expect(t.model, lambda m: json.loads(m.payload)["samples_learned"] == 3)
        assert json.loads(model.payload)["classes"] == ["a", "b", "c"]

        # A sample id seen before is acknowledged but not learned again; asked for a reply,
        # learn answers as POST /learn does.
        again = learn_body(sample("a", 0, sid="k1"))
        probe.publish(t.learn, again, response_topic="replies/learn", correlation=b"l1")
        learn_reply = json.loads(probe.expect("replies/learn", correlated(b"l1")).payload)
        assert learn_reply["accepted"] == learn_reply["duplicates"] == 1
        assert learn_reply["classes"] == 3 and learn_reply["model_version"] >= 1
        stats = client.get("/stats").json()
        assert stats["samples_learned"] == 3 and stats["events"]["duplicates"] == 1
        assert not [m for m in probe.messages if m.topic == t.error]

    # A graceful stop says offline too; retained, so a late subscriber sees it.
    with Probe(broker.port, [t.status, t.model]) as late:
        late.expect(t.status, is_payload(b"offline"))
        retained = late.expect(t.model)
        assert retained.retain and json.loads(retained.payload)["model_version"] >= 1


NEITHER = (
    "payload is neither JSON (an object, starting with '{') nor msgpack (a map, whose first "
    "byte is 0x80-0x8f, 0xde or 0xdf): it starts with "
)
MALFORMED: dict[str, tuple[bytes, str]] = {
    "text": (b"hello world", NEITHER + "b'hello world'; an MQTT 5 content type"),
    "empty": (b"", "payload is empty: send a JSON object or a msgpack map"),
    "bad-msgpack": (b"\x81\xc1\x00", "payload is not valid msgpack: it holds a byte that"),
    "truncated-msgpack": (
        b"\x81\xa7samples",
        "payload is not valid msgpack: it ends before its first object does",
    ),
    "msgpack-and-more": (
        msgpack.packb({"samples": []}) + b"\x00",
        "payload is not valid msgpack: more bytes follow its first object",
    ),
    "bad-json": (b'{"samples": [', "payload is not valid JSON: Expecting value"),
    "missing-label": (
        json.dumps({"samples": [{"features": [1, 0, 0, 0], "id": "m1"}]}).encode(),
        "samples[0].label",
    ),
    "bad-image": (
        learn_body({"image": base64.b64encode(b"not an image").decode(), "label": "a", "id": "m2"}),
        "samples[0]",
    ),
    "not-a-request": (json.dumps([1, 2]).encode(), "body"),
}


def test_malformed_payloads_go_to_error_and_nothing_is_learned(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path)
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        for name, (payload, _) in MALFORMED.items():
            assert probe.publish(t.learn, payload, correlation=name.encode())
        # A bad prediction request is reported the same way.
        probe.publish(t.predict_request, b"{", correlation=b"bad-predict")
        for name, (_, reason) in MALFORMED.items():
            body = json.loads(probe.expect(t.error, correlated(name.encode())).payload)
            assert reason in body["detail"], (name, body)
            assert body["topic"] == t.learn
            assert base64.b64decode(body["correlation_data"]) == name.encode()
        body = json.loads(probe.expect(t.error, correlated(b"bad-predict")).payload)
        assert body["topic"] == t.predict_request and "not valid JSON" in body["detail"]
        assert not [m for m in probe.messages if m.topic == t.error]  # one error per message
        assert learned(client) == 0
        assert bridge(client).handlers.rejected == len(MALFORMED) + 1
        # Still up, and still learning.
        assert client.get("/health/live").status_code == 200
        assert probe.publish(t.learn, learn_body(sample("a", 0, sid="ok")))
        wait_until(lambda: learned(client) == 1, "a valid sample learned after the bad ones")


def test_content_type_decides_the_encoding(broker: Mosquitto, tmp_path: Path) -> None:
    """With an MQTT 5 content type, the payload is read as it says; a type that names
    neither JSON nor msgpack leaves it to the first byte."""
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path)
    packed = msgpack.packb({"samples": [sample("a", 0)]})
    as_json = learn_body(sample("b", 1))
    cases = {
        "msgpack-as-json": (packed, "application/json"),
        "json-as-msgpack": (as_json, "application/msgpack"),
        "text-typed": (b"a,b,c", "text/csv"),
        "json-typed-text": (as_json, "text/plain"),  # sniffed: learned
        "msgpack-typed": (packed, "application/x-msgpack"),  # learned
    }
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        for name, (payload, content_type) in cases.items():
            props = properties(PacketTypes.PUBLISH)
            props.ContentType, props.CorrelationData = content_type, name.encode()
            probe.client.publish(t.learn, payload, qos=1, properties=props)

        def detail(name: str) -> str:
            message = probe.expect(t.error, correlated(name.encode()))
            text: str = json.loads(message.payload)["detail"]
            return text

        assert detail("msgpack-as-json").startswith(
            "payload is not valid JSON (as its content type 'application/json' says): "
        )
        assert detail("json-as-msgpack").startswith(
            "payload is not valid msgpack (as its content type 'application/msgpack' says): "
            "more bytes follow its first object (123)"
        )
        assert (
            detail("text-typed") == NEITHER + "b'a,b,c'; its content type 'text/csv' names neither"
        )
        wait_until(lambda: learned(client) == 2, "the two well-formed messages learned")
        assert not [m for m in probe.messages if m.topic == t.error]


def test_gif_tiff_and_data_urls_over_mqtt(broker: Mosquitto, tmp_path: Path) -> None:
    """The image inputs HTTP takes, MQTT takes too; an image too large gets the same one
    sentence on ``error``, never Pillow's."""
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path)
    gif, tiff = encoded([gray(LEFT), gray(RIGHT)], "GIF"), encoded([gray(RIGHT)], "TIFF")
    learn = {
        "samples": [
            {"image": gif, "label": "left"},  # msgpack carries the bytes
            {"image": tiff, "label": "right"},
        ]
    }
    url = "data:image/gif;base64," + base64.b64encode(gif).decode()
    with Probe(broker.port, [t.status, t.error, "replies/#"]) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        assert probe.publish(t.learn, msgpack.packb(learn))
        wait_until(lambda: learned(client) == 2, "a GIF and a TIFF learned")
        request = json.dumps({"samples": [{"image": url}], "top_k": 1}).encode()
        probe.publish(t.predict_request, request, response_topic="replies/p", correlation=b"p")
        assert json.loads(probe.expect("replies/p").payload)["predictions"][0]["label"] == "left"

        bomb = {"samples": [{"image": png_claiming(20000, 20000), "label": "big"}]}
        probe.publish(t.learn, msgpack.packb(bomb), correlation=b"big")
        detail = json.loads(probe.expect(t.error, correlated(b"big")).payload)["detail"]
        assert detail.startswith(
            "samples[0]: image of 20000x20000 = 400000000 pixels is over the limit of 4 pixels"
        )
        assert "bomb" not in detail
        text = {"samples": [{"image": "data:text/plain;base64,aGk=", "label": "x"}]}
        probe.publish(t.learn, json.dumps(text).encode(), correlation=b"text")
        detail = json.loads(probe.expect(t.error, correlated(b"text")).payload)["detail"]
        assert detail.startswith("samples[0].image: image is a data URL of type 'text/plain'")
        assert learned(client) == 2


def test_sample_ids_of_a_rejected_message_are_reported(broker: Mosquitto, tmp_path: Path) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path)
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings):
        probe.expect(t.status, is_payload(b"online"))
        bad = learn_body(sample("a", 0, sid="s1"), {"features": [1, 2], "label": "b", "id": "s2"})
        assert probe.publish(t.learn, bad)
        body = json.loads(probe.expect(t.error).payload)
        assert body["ids"] == ["s1", "s2"] and "samples[1]" in body["detail"]


def _env(port: int, dev: str) -> dict[str, str]:
    return identity_env(
        4,
        log_level="warning",
        mqtt_host="127.0.0.1",
        mqtt_port=str(port),
        mqtt_device_id=dev,
        mqtt_keepalive="5",
    )


@pytest.mark.slow
def test_killed_daemon_goes_offline_and_later_learns_what_was_published_meanwhile(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    data, env = tmp_path / "data", _env(broker.port, dev)
    with Probe(broker.port, [t.status]) as probe:
        with Daemon(data, env) as daemon:
            probe.expect(t.status, is_payload(b"online"))
            assert probe.publish(t.learn, learn_body(sample("a", 0, sid="before")))
            wait_until(lambda: learned(daemon.url) == 1, "the first sample learned")
            daemon.process.kill()  # SIGKILL: no goodbye, so the broker sends the last will
            daemon.process.wait(10)
            probe.expect(t.status, is_payload(b"offline"))

        # Down: the broker keeps QoS 1 messages for the persistent session.
        for i in range(5):
            assert probe.publish(t.learn, learn_body(sample(f"c{i}", i % 4, sid=f"down-{i}")))

        with Daemon(data, env) as daemon:
            probe.expect(t.status, is_payload(b"online"))
            wait_until(lambda: learned(daemon.url) == 6, "the queued samples learned")
            stats = httpx.get(f"{daemon.url}/stats").json()
            assert set(stats["classes"]) == {"a", "c0", "c1", "c2", "c3", "c4"}


@pytest.mark.slow
def test_broker_restart_mid_stream_loses_no_acknowledged_sample(tmp_path: Path) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    stalled, total = 10, 30

    def publish(probe: Probe, i: int) -> None:
        body = learn_body(sample(f"c{i % 3}", i % 4, sid=f"s{i}"))
        # Until the broker acknowledges it; a repeat is harmless (same sample id).
        while not probe.publish(t.learn, body, timeout=2.0):
            pass

    with Mosquitto(tmp_path / "broker") as b:
        settings = mqtt_settings(b.port, dev, tmp_path)
        with running(settings, durable=True) as client, Probe(b.port, [t.status]) as probe:
            probe.expect(t.status, is_payload(b"online"))
            mqtt = bridge(client)
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            with runtime.exclusive():  # the daemon holds these, unacknowledged
                for i in range(stalled):
                    publish(probe, i)
                wait_until(lambda: mqtt.counters["received"] == stalled, "all in flight")
                b.restart()  # the broker saves its state on SIGTERM and comes back
            for i in range(stalled, total):
                publish(probe, i)
            wait_until(lambda: learned(client) == total, f"all {total} samples learned", 30)
            stats = client.get("/stats").json()
            assert mqtt.counters["connects"] >= 2 and stats["samples_learned"] == total
            # The broker delivered the stalled messages again; their ids kept them single.
            wait_until(
                lambda: client.get("/stats").json()["events"]["duplicates"] >= stalled,
                "the redelivered messages acknowledged as duplicates",
            )


def test_full_learn_queue_stops_taking_messages_and_drops_none(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    window, total = 4, 20
    settings = mqtt_settings(
        broker.port, dev, tmp_path, queue_size=1, max_batch=1, mqtt_receive_maximum=window
    )
    with running(settings) as client, Probe(broker.port, [t.status]) as probe:
        probe.expect(t.status, is_payload(b"online"))
        mqtt = bridge(client)
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.exclusive():  # the writer stalls (a slow disk, say)
            for i in range(total):
                assert probe.publish(t.learn, learn_body(sample("a", i % 4, sid=f"q{i}")))
            wait_until(lambda: mqtt.handlers.queue_full_waits > 0, "the learn queue full")
            wait_until(lambda: mqtt.counters["received"] >= window, "the window filled")
            time.sleep(0.3)  # give an over-eager broker time to push more
            assert mqtt.counters["received"] == window  # the rest waits at the broker
            assert mqtt.counters["max_in_flight"] <= window
        wait_until(lambda: learned(client) == total, "every sample learned once the writer runs")
        assert mqtt.counters["max_in_flight"] <= window


def test_password_auth_and_required_readiness(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    dev = device()
    t = Topics.under("edgecl", dev)
    with Mosquitto(tmp_path / "broker", [f"password_file {passwords}"], anonymous=False) as b:

        def login(password: str, required: bool = True) -> Settings:
            return mqtt_settings(
                b.port, dev, tmp_path, mqtt_username="edge", mqtt_password=password,
                mqtt_required=required,
            )  # fmt: skip

        with running(login("nope")) as client:
            wait_until(lambda: bridge(client).counters["refused"] > 0, "the broker refusing")
            assert not bridge(client).connected
            ready = client.get("/health/ready")
            assert ready.status_code == 503 and "MQTT" in ready.json()["detail"]
        with running(login("nope", required=False)) as client:  # ready without the broker
            assert client.get("/health/ready").status_code == 200
        right = login("s3cret")
        credentials = {"username": "edge", "password": "s3cret"}
        with running(right) as client, Probe(b.port, [t.status], **credentials) as probe:
            probe.expect(t.status, is_payload(b"online"))
            assert client.get("/health/ready").status_code == 200
            assert probe.publish(t.learn, learn_body(sample("a", 0)))
            wait_until(lambda: learned(client) == 1, "learned over an authenticated connection")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mutual_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=edgecl test CA", cwd=pki)  # fmt: skip
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=pki)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 "-extfile", "san.ext", cwd=pki)  # fmt: skip
    tls = [
        f"cafile {pki / 'ca.crt'}",
        f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}",
        "require_certificate true",
    ]
    with Mosquitto(tmp_path / "broker", tls) as b:
        settings = mqtt_settings(
            b.port,
            device(),
            tmp_path,
            mqtt_tls_ca=pki / "ca.crt",
            mqtt_tls_cert=pki / "client.crt",
            mqtt_tls_key=pki / "client.key",
            mqtt_required=True,
        )
        with running(settings) as client:
            wait_until(lambda: bridge(client).connected, "connected over TLS")
            assert client.get("/health/ready").status_code == 200


def test_settings_reject_topic_wildcards_and_half_a_client_certificate() -> None:
    bad: list[dict[str, Any]] = [
        {"mqtt_device_id": "a/b"},
        {"mqtt_prefix": "edge/#"},
        {"mqtt_tls_key": "k.pem"},
    ]
    for fields in bad:
        with pytest.raises(ValueError):
            Settings(**fields)
    assert Settings.model_validate({"mqtt_device_id": "pi-7"}).mqtt.device == "pi-7"
    assert Settings(mqtt=MqttSettings(device_id="pi-7")).mqtt.client_id_or_default == "edgecl-pi-7"


def test_a_raw_image_store_learns_images_over_mqtt_and_keeps_them_across_a_restart(
    broker: Mosquitto, tmp_path: Path, backbone_manifest: Path
) -> None:
    from edgecl.datasets import FASHION_CLASSES, load_fixture
    from tests.service.test_serve_fashion import png as fashion_png

    train, test = load_fixture()
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(
        broker.port,
        dev,
        tmp_path,
        backbone="onnx",
        backbone_dir=backbone_manifest.parent.parent,
        store={"kind": "class_balanced", "encoding": "lz4", "max_bytes": 4 << 20},
    )
    picked = [i for c in (1, 8) for i in (train.labels == c).nonzero()[0][:10]]
    samples = [
        {
            "image": base64.b64encode(fashion_png(train.images[i])).decode(),
            "label": FASHION_CLASSES[int(train.labels[i])],
            "id": f"img-{i}",
        }
        for i in picked
    ]
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings, True) as client:
        probe.expect(t.status, is_payload(b"online"))
        assert probe.publish(t.learn, learn_body(*samples))
        # A feature vector has no image for the store to keep: an error, nothing learned.
        features = {"features": [0.0] * 1280, "label": "x"}
        assert probe.publish(t.learn, learn_body(features), correlation=b"features")
        body = json.loads(probe.expect(t.error, correlated(b"features")).payload)
        assert "keeps raw images" in body["detail"]
        wait_until(lambda: learned(client) == len(samples), "the images learned")
        store = client.get("/stats").json()["store"]
        assert store["items"] == len(samples) and store["kind"] == "class_balanced"
    with running(settings, True) as client:  # restored from the checkpoint
        assert client.get("/stats").json()["store"]["items"] == len(samples)
        held = test.classes([1, 8])
        files = {"file": ("x.png", fashion_png(held.images[0]), "image/png")}
        predicted = client.post("/predict", files=files).json()["predictions"][0]["label"]
        assert predicted == FASHION_CLASSES[int(held.labels[0])]
