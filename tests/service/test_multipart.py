"""Multipart forms are as strict as JSON: every field the route takes works, any other is
refused by name with the list of those it takes, and nothing is learned."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import png, sample, stats_counts

IMAGE = [("file", ("x.png", png([[0, 0], [255, 0]]), "image/png"))]


def taught(client: TestClient) -> TestClient:
    response = client.post(
        "/learn", json={"samples": [sample("a", 0), sample("b", 1), sample("c", 3)]}
    )
    assert response.status_code == 200, response.text
    return client


def test_top_k_and_threshold_are_taken_as_form_fields(client: TestClient) -> None:
    taught(client)
    out = client.post("/predict", files=IMAGE, data={"top_k": "1"}).json()
    assert len(out["predictions"][0]["top_k"]) == 1
    out = client.post("/predict", files=IMAGE).json()
    assert len(out["predictions"][0]["top_k"]) == 3
    out = client.post("/predict", files=IMAGE, data={"threshold": "0.25"}).json()
    assert out["threshold"] == 0.25


def test_unknown_field_is_refused_like_json(client: TestClient) -> None:
    taught(client)
    before = stats_counts(client)
    response = client.post("/predict", files=IMAGE, data={"topk": "1"})
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [
        {
            "loc": "topk",
            "msg": "unknown field (did you mean 'top_k'?); multipart /predict takes the "
            "fields file, top_k, threshold, task",
        }
    ]
    # The JSON body with the same mistake names it the same way.
    json_body = {"samples": [{"features": [0, 0, 1, 0]}], "topk": 1}
    assert client.post("/predict", json=json_body).json()["errors"][0]["loc"] == "topk"
    response = client.post("/learn", files=IMAGE, data={"label": "x", "colour": "red"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("colour: unknown field; multipart /learn")
    assert stats_counts(client) == before


def test_learn_form_with_label_and_id_still_works(client: TestClient) -> None:
    response = client.post("/learn", files=IMAGE * 2, data={"label": "x", "id": ["k1", "k2"]})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2


def test_openapi_form_lists_exactly_the_accepted_fields(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    learn, predict = {"file", "label", "id", "task"}, {"file", "top_k", "threshold", "task"}
    expected = {"/learn": learn, "/predict": predict}
    for path, names in expected.items():
        form = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        assert set(form["properties"]) == names
        assert form["additionalProperties"] is False


def test_a_multipart_body_that_cannot_be_parsed_is_a_400_with_its_reason(
    client: TestClient,
) -> None:
    # Found by schemathesis: a control character inside a part's header.
    boundary = "529ccafa53e30cf348d120ac475dbdb4"
    body = f"--{boundary}\r\n\x0bå\U000bf968\U000ae5a8--{boundary}--\r\n".encode()
    before = stats_counts(client)
    response = client.post(
        "/learn",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "multipart body could not be parsed" in response.json()["detail"]
    assert stats_counts(client) == before
