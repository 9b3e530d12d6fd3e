"""Each bad input is refused with the right status and message, and nothing is learned."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import make_settings, png, sample, stats_counts

TOKEN = {"authorization": "Bearer t0ken"}
GOOD = sample("a", 0)


@dataclass
class Bad:
    name: str
    status: int
    message: str
    path: str = "/learn"
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(TOKEN))
    files: list[tuple[str, tuple[str | None, bytes, str]]] | None = None
    data: dict[str, str | list[str]] | None = None


def learn_body(*samples: dict[str, Any]) -> dict[str, Any]:
    return {"samples": list(samples)}


BAD_IMAGE = base64.b64encode(b"\x89PNG not really").decode()
CASES = [
    Bad("no token", 401, "bearer token", json=learn_body(GOOD), headers={}),
    Bad(
        "wrong token",
        401,
        "bearer token",
        json=learn_body(GOOD),
        headers={"authorization": "Bearer nope"},
    ),
    Bad(
        "body over the limit",
        413,
        "larger than the limit",
        json=learn_body(*[sample("a", 0)] * 400),
    ),
    Bad(
        "too many samples",
        413,
        "too many samples: 9 in one request, the limit is 8",
        json=learn_body(*[GOOD] * 9),
    ),
    Bad(
        "boolean feature",
        422,
        "samples[1].features: array must hold only numbers, found bool",
        json=learn_body(GOOD, {"features": [1.0, True, 0, 0], "label": "a"}),
    ),
    Bad(
        "boolean label",
        422,
        "samples[0].label: label True has type bool",
        json=learn_body({"features": [1.0, 0, 0, 0], "label": True}),
    ),
    Bad(
        "float label",
        422,
        "samples[0].label: label 1.5 has type float",
        json=learn_body({"features": [1.0, 0, 0, 0], "label": 1.5}),
    ),
    Bad(
        "empty label",
        422,
        "samples[0].label: label is an empty string",
        json=learn_body({"features": [1.0, 0, 0, 0], "label": ""}),
    ),
    Bad(
        "missing label",
        422,
        "samples[1].label: Field required",
        json=learn_body(GOOD, {"features": [1.0, 0, 0, 0]}),
    ),
    Bad(
        "unknown field",
        422,
        "samples[0].colour: unknown field",
        json=learn_body({**GOOD, "colour": "red"}),
    ),
    Bad(
        "no input",
        422,
        "samples[0]: give exactly one of image, array or features",
        json=learn_body({"label": "a"}),
    ),
    Bad(
        "two inputs",
        422,
        "samples[0]: give exactly one of image, array or features",
        json=learn_body({**GOOD, "array": [1, 2, 3, 4]}),
    ),
    Bad(
        "string as features",
        422,
        "samples[0].features: expected a nested list",
        json=learn_body({"features": "1,2,3,4", "label": "a"}),
    ),
    Bad(
        "wrong feature dimension",
        422,
        "samples[2]: latent dimension mismatch",
        json=learn_body(GOOD, GOOD, {"features": [1.0, 2.0], "label": "a"}),
    ),
    Bad(
        "NaN feature",
        422,
        "samples[0]: inputs contain NaN",
        content=b'{"samples": [{"features": [NaN, 0, 0, 0], "label": "a"}]}',
    ),
    Bad(
        "feature overflowing float32",
        422,
        "samples[1]: values overflow float32",
        json=learn_body(GOOD, {"features": [1e300, 0, 0, 0], "label": "a"}),
    ),
    Bad(
        "predict feature overflowing float32",
        422,
        "samples[0]: values overflow float32",
        path="/predict",
        json={"samples": [{"features": [0, -1e300, 0, 0]}]},
    ),
    Bad(
        "label with a lone surrogate",
        422,
        "samples[0].label: label is not valid Unicode text (it holds a lone surrogate)",
        content=b'{"samples": [{"features": [1, 0, 0, 0], "label": "\\ud800"}]}',
    ),
    Bad(
        "integer label beyond 64 bits",
        422,
        "samples[0].label: integer label is outside",
        json=learn_body({"features": [1.0, 0, 0, 0], "label": 2**70}),
    ),
    Bad(
        "integer beyond 64 bits in an array",
        422,
        "samples[0].array: array holds an integer",
        json=learn_body({"array": [2**70, 0, 0, 0], "label": "a"}),
    ),
    Bad(
        "ragged array",
        422,
        "samples[0].array: array is ragged",
        json=learn_body({"array": [[1, 2], [3]], "label": "a"}),
    ),
    Bad(
        "packed array of the wrong size",
        422,
        "samples[0].array: data must be a flat list of 4",
        json=learn_body({"array": {"dtype": "uint8", "shape": [4], "data": [1, 2]}, "label": "a"}),
    ),
    Bad(
        "image not base64",
        422,
        "samples[0].image: image is not valid base64",
        json=learn_body({"image": "%%%", "label": "a"}),
    ),
    Bad(
        "undecodable image",
        422,
        "samples[1]: cannot decode image bytes",
        json=learn_body(GOOD, {"image": BAD_IMAGE, "label": "a"}),
    ),
    Bad(
        "image as a number",
        422,
        "samples[0].image: image must be base64 text",
        json=learn_body({"image": 5, "label": "a"}),
    ),
    Bad(
        "id as a number",
        422,
        "samples[0].id: Input should be a valid string",
        json=learn_body({**GOOD, "id": 5}),
    ),
    Bad("no samples", 422, "samples: List should have at least 1 item", json=learn_body()),
    Bad(
        "samples not a list",
        422,
        "samples: Input should be a valid list",
        json={"samples": {"features": [1, 0, 0, 0]}},
    ),
    Bad("body not an object", 422, "body: Input should be", json=[GOOD]),
    Bad("malformed JSON", 422, "body is not valid JSON", content=b'{"samples": ['),
    Bad(
        "malformed msgpack",
        422,
        "body is not valid msgpack",
        content=b"\xc1\xc1",
        headers={**TOKEN, "content-type": "application/msgpack"},
    ),
    Bad(
        "unsupported content type",
        415,
        "content type 'text/plain' is not supported",
        content=b"hello",
        headers={**TOKEN, "content-type": "text/plain"},
    ),
    Bad(
        "msgpack boolean feature",
        422,
        "samples[0].features: array must hold only numbers",
        content=msgpack.packb(learn_body({"features": [False, 0, 0, 0], "label": "a"})),
        headers={**TOKEN, "content-type": "application/msgpack"},
    ),
    Bad(
        "multipart without file",
        422,
        "file: give one or more image files",
        files=[("label", (None, b"a", "text/plain"))],
    ),
    Bad(
        "multipart labels do not match files",
        422,
        "label: give one label for all files",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))] * 3,
        data={"label": ["a", "b"]},
    ),
    Bad(
        "multipart undecodable image",
        422,
        "samples[0]: cannot decode image bytes",
        files=[("file", ("a.png", b"not a png", "image/png"))],
        data={"label": "a"},
    ),
    Bad(
        "multipart misspelt top_k",
        422,
        "topk: unknown field (did you mean 'top_k'?); multipart /predict takes the fields "
        "file, top_k, threshold",
        path="/predict",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))],
        data={"topk": "1"},
    ),
    Bad(
        "multipart label on a prediction",
        422,
        "label: unknown field; multipart /predict takes the fields file, top_k, threshold",
        path="/predict",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))],
        data={"label": "x"},
    ),
    Bad(
        "multipart labels for label",
        422,
        "labels: unknown field (did you mean 'label'?); multipart /learn takes the fields "
        "file, label, id",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))],
        data={"labels": "fruit"},
    ),
    Bad(
        "multipart top_k twice",
        422,
        "top_k: give it once",
        path="/predict",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))],
        data={"top_k": ["1", "2"]},
    ),
    Bad(
        "multipart threshold not a number",
        422,
        "threshold: must be a finite number",
        path="/predict",
        files=[("file", ("a.png", png([[0, 0], [0, 0]]), "image/png"))],
        data={"threshold": "inf"},
    ),
    Bad(
        "top_k zero",
        422,
        "top_k: Input should be greater than or equal to 1",
        path="/predict",
        json={"samples": [{"features": [1.0, 0, 0, 0]}], "top_k": 0},
    ),
    Bad(
        "top_k boolean",
        422,
        "top_k: Input should be a valid integer",
        path="/predict",
        json={"samples": [{"features": [1.0, 0, 0, 0]}], "top_k": True},
    ),
    Bad(
        "label on a prediction",
        422,
        "samples[0].label: unknown field",
        path="/predict",
        json={"samples": [GOOD]},
    ),
    Bad(
        "predict undecodable image",
        422,
        "samples[0]: cannot decode image bytes",
        path="/predict",
        json={"samples": [{"image": BAD_IMAGE}]},
    ),
]


@pytest.fixture(scope="module")
def trained() -> Any:
    from service.app import create_app
    from service.bootstrap import build_runtime

    settings = make_settings(api_token="t0ken", max_body_bytes=8192, max_samples_per_request=8)
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        response = client.post(
            "/learn", json=learn_body(sample("a", 0), sample("b", 1)), headers=TOKEN
        )
        assert response.status_code == 200
        yield client


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(trained: TestClient, case: Bad) -> None:
    before = stats_counts(trained, TOKEN)
    send: Callable[..., Any] = trained.post
    if case.files is not None or case.data is not None:
        response = send(case.path, files=case.files, data=case.data, headers=case.headers)
    elif case.content is not None:
        headers = {"content-type": "application/json", **case.headers}
        response = send(case.path, content=case.content, headers=headers)
    else:
        response = send(
            case.path,
            content=json.dumps(case.json).encode(),
            headers={"content-type": "application/json", **case.headers},
        )
    assert response.status_code == case.status, response.text
    assert case.message in response.json()["detail"]
    assert stats_counts(trained, TOKEN) == before


def test_all_or_nothing_with_one_bad_sample_last(trained: TestClient) -> None:
    before = stats_counts(trained, TOKEN)
    body = learn_body(sample("new", 2), sample("new", 2), {"features": [1, 2], "label": "new"})
    response = trained.post("/learn", json=body, headers=TOKEN)
    assert response.status_code == 422
    after = stats_counts(trained, TOKEN)
    assert after == before and "new" not in after["classes"]
