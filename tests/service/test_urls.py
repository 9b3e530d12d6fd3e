"""The addresses a newcomer types: ``/`` leads to the dashboard, ``/dashboard/`` too, a
trailing slash on an API route answers without a redirect, and ``/docs`` needs nothing
from the internet."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin

from fastapi.testclient import TestClient

from tests.service.conftest import make_settings, sample


def test_root_leads_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert urljoin("http://testserver/", response.headers["location"]) == (
        "http://testserver/dashboard"
    )
    # Who follows no redirect reads where to go.
    for link in ('href="dashboard"', 'href="docs"', 'href="stats"'):
        assert link in response.text
    page = client.get("/")
    assert page.status_code == 200 and "<title>edgecl dashboard</title>" in page.text


def test_dashboard_with_a_trailing_slash_is_redirected(client: TestClient) -> None:
    response = client.get("/dashboard/?x=1", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/dashboard?x=1"
    page = client.get("/dashboard/")
    assert str(page.url) == "http://testserver/dashboard"
    assert "<title>edgecl dashboard</title>" in page.text
    # The page's files resolve from there (its links are relative).
    assert client.get("/dashboard/app.js").status_code == 200


def test_trailing_slash_on_api_routes_answers_without_redirect(client: TestClient) -> None:
    response = client.post(
        "/learn/", json={"samples": [sample("a", 0), sample("b", 1)]}, follow_redirects=False
    )
    assert response.status_code == 200, response.text
    response = client.post(
        "/predict/", json={"samples": [{"features": [0, 1, 0, 0]}]}, follow_redirects=False
    )
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "b"
    for path in ("/stats/", "/health/ready/", "/metrics/", "/openapi.json/"):
        assert client.get(path, follow_redirects=False).status_code == 200, path
    # Counted under the route, not a path of its own.
    metrics = client.get("/metrics").text
    assert 'route="/predict",status="200"' in metrics
    assert "/predict/" not in metrics


def test_schema_has_one_operation_per_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.endswith("/")]
    assert {"/learn", "/predict", "/stats"} <= set(paths)
    operations = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operations) == len(set(operations))


URL = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def test_docs_need_no_internet(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(api_token="s3cret"))
    good = {"authorization": "Bearer s3cret"}
    assert client.get("/docs").status_code == 401
    page = client.get("/docs", headers=good)
    assert page.status_code == 200
    urls = [a or b for a, b in URL.findall(page.text)]
    assert "/docs/swagger-ui-bundle.js" in urls and "/docs/swagger-ui.css" in urls
    assert "/openapi.json" in urls
    hosts = re.findall(r"(?:https?:)?//[a-z0-9.-]+", page.text, re.I)
    assert hosts == [], hosts
    assert '"validatorUrl": null' in page.text  # no badge from the public validator
    for url in urls:
        response = client.get(url, headers=good)
        assert response.status_code == 200, url
    # Swagger UI's files hold no data: served without the token, as the dashboard's.
    script = client.get("/docs/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in script.text
    assert client.get("/docs/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/nope.js").status_code == 404
    assert client.get("/docs/..%2Fapp.py").status_code == 404


def test_redoc_leads_to_docs(client: TestClient) -> None:
    response = client.get("/redoc", follow_redirects=False)
    assert response.status_code == 307
    assert urljoin("http://testserver/redoc", response.headers["location"]).endswith("/docs")
