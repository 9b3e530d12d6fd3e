"""4 threads predict while 2 threads learn: no errors, well-formed replies, versions only grow."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient

from service.schemas import LearnReply, PredictReply
from service.settings import Settings
from tests.service.conftest import DIM, sample

ROUNDS = 40
CLASSES = ["a", "b", "c", "d", "e", "f"]


def test_predict_while_learning(client_for: Callable[..., TestClient], settings: Settings) -> None:
    client = client_for(settings)
    assert client.post("/learn", json={"samples": [sample("a", 0)]}).status_code == 200
    errors: list[str] = []
    versions: dict[str, list[int]] = {}
    start = threading.Barrier(6)

    def learner(worker: int) -> None:
        rng = np.random.default_rng(worker)
        seen = versions.setdefault(f"learn-{worker}", [])
        start.wait()
        for i in range(ROUNDS):
            # New classes keep appearing while predictions run.
            label = CLASSES[(worker * ROUNDS + i) % len(CLASSES)]
            z = rng.normal(size=(3, DIM)).tolist()
            body = {"samples": [{"features": row, "label": label} for row in z]}
            response = client.post("/learn", json=body)
            if response.status_code != 200:
                errors.append(f"learn {response.status_code}: {response.text}")
                continue
            seen.append(LearnReply.model_validate(response.json()).model_version)

    def predictor(worker: int) -> None:
        rng = np.random.default_rng(100 + worker)
        seen = versions.setdefault(f"predict-{worker}", [])
        start.wait()
        for _ in range(ROUNDS):
            body = {"samples": [{"features": rng.normal(size=DIM).tolist()}] * 2, "top_k": 3}
            response = client.post("/predict", json=body)
            if response.status_code != 200:
                errors.append(f"predict {response.status_code}: {response.text}")
                continue
            reply = PredictReply.model_validate(response.json())
            for p in reply.predictions:
                scores = [t.score for t in p.top_k]
                if p.label != p.top_k[0].label or scores != sorted(scores, reverse=True):
                    errors.append(f"inconsistent prediction {p}")
                if not 0.0 <= p.score <= 1.0 or len(p.top_k) > 3:
                    errors.append(f"malformed prediction {p}")
            seen.append(reply.model_version)

    threads = [threading.Thread(target=learner, args=(w,)) for w in range(2)]
    threads += [threading.Thread(target=predictor, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for name, seen in versions.items():
        assert len(seen) == ROUNDS, name
        assert seen == sorted(seen), f"{name} saw model_version go backwards: {seen}"
    stats = client.get("/stats").json()
    assert stats["samples_learned"] == 1 + 2 * ROUNDS * 3
    assert stats["model_version"] >= max(max(v) for v in versions.values())
