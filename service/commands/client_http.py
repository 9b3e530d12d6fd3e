"""Talking to a running daemon for the client commands: msgpack bodies (image bytes as
they are, no base64), a timeout on every request, a wait and retry when the daemon says
it is busy (503 with Retry-After), and errors as sentences."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import msgpack

MSGPACK = "application/msgpack"
#: How long the client keeps retrying while the daemon answers 503 (busy or starting).
BUSY_WAIT_S = 120.0


class DaemonError(Exception):
    """The daemon refused a request (``status``: its HTTP status, with its message and the
    per-field ``errors``), or the request got no answer (``status`` None)."""

    def __init__(
        self, message: str, status: int | None = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.errors = status, errors or []


class Unreachable(DaemonError):
    """Nothing answers at the URL."""


class Dropped(DaemonError):
    """The daemon closed the connection while the body was being sent: it refuses a body
    over its size limit before reading it, so the 413 may never reach the client."""


def check_url(url: str) -> str:
    """
    >>> check_url("http://127.0.0.1:8080/")
    'http://127.0.0.1:8080'
    >>> check_url("localhost:8080")
    Traceback (most recent call last):
    ...
    ValueError: --url must start with http:// or https:// (got 'localhost:8080')
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--url must start with http:// or https:// (got {url!r})")
    return url.rstrip("/")


class DaemonClient:
    """Requests to the daemon at ``url`` (bearer ``token`` when given)."""

    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url, self.token, self.timeout = check_url(url), token, timeout

    def get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """``payload`` sent as msgpack (bytes stay bytes), the JSON reply decoded."""
        return self._request("POST", path, msgpack.packb(payload))

    def _request(self, method: str, path: str, body: bytes | None) -> Any:
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            try:
                return self._once(method, path, body)
            except _Busy as busy:
                if time.monotonic() + busy.wait > deadline:
                    raise DaemonError(
                        f"the daemon at {self.url} stayed busy for {BUSY_WAIT_S:.0f} s: "
                        f"{busy.detail}",
                        503,
                    ) from None
                time.sleep(busy.wait)

    def _once(self, method: str, path: str, body: bytes | None) -> Any:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = MSGPACK
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise self._refused(exc) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (BrokenPipeError, ConnectionResetError)) and body:
                raise Dropped(f"the daemon at {self.url} closed the connection", None) from None
            if isinstance(reason, TimeoutError):
                raise self._timed_out() from None
            raise Unreachable(self._unreachable(reason)) from None
        except (BrokenPipeError, ConnectionResetError):
            if body:
                raise Dropped(f"the daemon at {self.url} closed the connection", None) from None
            raise Unreachable(self._unreachable("the connection was reset")) from None
        except TimeoutError:
            raise self._timed_out() from None
        except http.client.HTTPException as exc:
            raise DaemonError(f"the answer from {self.url} is not HTTP ({exc!r})") from None

    def _unreachable(self, reason: object) -> str:
        why = getattr(reason, "strerror", None) or str(reason)
        return (
            f"cannot reach the edgecl daemon at {self.url} ({why}): start it with `make run` "
            "(or `edgecl serve`), or point --url at a running one"
        )

    def _timed_out(self) -> DaemonError:
        return DaemonError(f"the daemon at {self.url} did not answer within {self.timeout:g} s")

    def _refused(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            data = json.loads(exc.read())
        except (ValueError, OSError):
            data = None
        detail = data.get("detail") if isinstance(data, dict) else None
        detail = detail if isinstance(detail, str) else (exc.reason or "no message")
        if exc.code == 503:
            retry = exc.headers.get("retry-after", "")
            wait = min(float(retry), 5.0) if retry.isdigit() else 1.0
            return _Busy(detail, wait)
        if exc.code == 401:
            detail += " (give --token, or set EDGECL_API_TOKEN as for the daemon)"
        items = data.get("errors") if isinstance(data, dict) else None
        errors = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
        return DaemonError(detail, exc.code, errors)


class _Busy(Exception):
    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.detail, self.wait = detail, wait
