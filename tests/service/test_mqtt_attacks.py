"""MQTT against a real mosquitto: a message that can never succeed is answered on the
error topic and acknowledged, never redelivered forever nor holding an in-flight slot, and
the honest messages around it are learned."""

from __future__ import annotations

import json
from pathlib import Path

from service.mqtt_wire import Topics
from tests.mosquitto import Mosquitto, Probe
from tests.service.conftest import sample
from tests.service.test_mqtt import (
    bridge,
    broker,
    correlated,
    device,
    is_payload,
    learn_body,
    learned,
    mqtt_settings,
    pytestmark,
    running,
    wait_until,
)

__all__ = ["broker", "pytestmark"]  # the module's broker fixture and its skip mark

POISON = b'{"samples": [{"features": [1, 0, 0, 0], "label": "\\ud800", "id": "p1"}]}'


def test_a_poison_sample_is_rejected_and_acknowledged_and_honest_ones_are_learned(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path, max_wait_ms=50.0)
    with Probe(broker.port, [t.status, t.error]) as probe:
        with running(settings, durable=True) as client:
            probe.expect(t.status, is_payload(b"online"))
            for i in range(4):
                assert probe.publish(t.learn, learn_body(sample("a", i % 4, sid=f"h{i}")))
                if i == 1:
                    assert probe.publish(t.learn, POISON, correlation=b"poison")
            wait_until(lambda: learned(client) == 4, "the honest samples learned")
            error = json.loads(probe.expect(t.error, correlated(b"poison")).payload)
            assert "samples[0].label: label is not valid Unicode text" in error["detail"]
            assert error["ids"] == ["p1"]
            mqtt = bridge(client)
            wait_until(lambda: mqtt.counters["acknowledged"] == 5, "every message acknowledged")

        # Restarted on the same session: the poison is not delivered again; a new message
        # is the only one that arrives.
        with running(settings, durable=True) as client:
            probe.expect(t.status, is_payload(b"online"))
            assert probe.publish(t.learn, learn_body(sample("b", 1, sid="after")))
            wait_until(lambda: learned(client) == 5, "the new sample learned")
            assert bridge(client).counters["received"] == 1
    assert not [m for m in probe.messages if m.topic == t.error]


def test_learning_goes_on_after_100_wildcard_response_topics(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    # A window smaller than the attack: each leaked slot used to be lost for good.
    settings = mqtt_settings(broker.port, dev, tmp_path, mqtt_receive_maximum=16)
    wildcards = ["replies/#", "replies/+/x", "#", "+"]
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        for i in range(100):
            body = learn_body(sample("a", 0, sid=f"w{i}"))
            topic = wildcards[i % len(wildcards)]
            assert probe.publish(t.learn, body, response_topic=topic, correlation=f"w{i}".encode())
        for i in range(100):
            error = json.loads(probe.expect(t.error, correlated(f"w{i}".encode())).payload)
            assert "is not a topic one can publish to" in error["detail"], error
        # A wildcard on a prediction request is answered the same way.
        request = json.dumps({"samples": [{"features": [1, 0, 0, 0]}]}).encode()
        assert probe.publish(t.predict_request, request, response_topic="r/#", correlation=b"p")
        assert (
            "not a topic" in json.loads(probe.expect(t.error, correlated(b"p")).payload)["detail"]
        )

        assert probe.publish(t.learn, learn_body(sample("b", 1, sid="ok")), response_topic="r/ok")
        wait_until(lambda: learned(client) == 1, "an honest sample learned after the attack")
        assert bridge(client).counters["acknowledged"] == 102


def test_a_new_class_past_the_limit_and_a_million_samples_are_errors(
    broker: Mosquitto, tmp_path: Path
) -> None:
    dev = device()
    t = Topics.under("edgecl", dev)
    settings = mqtt_settings(broker.port, dev, tmp_path, max_classes=2)
    with Probe(broker.port, [t.status, t.error]) as probe, running(settings) as client:
        probe.expect(t.status, is_payload(b"online"))
        assert probe.publish(t.learn, learn_body(sample("a", 0), sample("b", 1)))
        wait_until(lambda: learned(client) == 2, "two classes learned")
        assert probe.publish(t.learn, learn_body(sample("c", 2, sid="c1")), correlation=b"c")
        error = json.loads(probe.expect(t.error, correlated(b"c")).payload)
        assert (
            "would be a new class, but the model holds the most classes it may" in (error["detail"])
        )
        assert error["ids"] == ["c1"]
        million = b'{"samples": [' + b"{}," * 1_000_000 + b"{}]}"
        assert probe.publish(t.learn, million, correlation=b"m")
        error = json.loads(probe.expect(t.error, correlated(b"m")).payload)
        assert error["detail"].startswith("too many samples") and len(error["detail"]) < 300
        assert probe.publish(t.learn, learn_body(sample("a", 0)))
        wait_until(lambda: learned(client) == 3, "a known class still learned")
        mqtt = bridge(client)
        wait_until(lambda: mqtt.counters["acknowledged"] == 4, "every message acknowledged")
