"""The CLI's HTTP backend: the app's operators' routes (``GET /api/status``, ``/api/rollouts``,
``/api/records``, ``/api/monitor``, ``POST /api/commands``; triggers/http.py), FUNCTION auth level,
with the key sent as ``x-functions-key`` (never in the URL, where proxies and logs keep it). Plain
``urllib``: the CLI needs no HTTP library of its own."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from reactor.backend import Backend, BackendError, NotFound, Page, Refused

TIMEOUT_SECONDS = 30.0


class HttpBackend(Backend):
    def __init__(self, url: str, key: str | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(f"--url {url!r}: expected http(s)://host/api")
        self.base = url.rstrip("/")
        self._key = key

    def _call(self, method: str, route: str, params: dict[str, Any] | None = None,
              body: bytes | None = None) -> tuple[int, Any]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        req = urllib.request.Request(f"{self.base}/{route}" + (f"?{query}" if query else ""), data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"x-functions-key": self._key} if self._key else {})})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, _payload(exc.read())
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise BackendError(f"cannot reach {self.base}: {getattr(exc, 'reason', exc)}") from exc
        error = payload.get("error") if isinstance(payload, dict) else None
        if status in (401, 403):
            hint = "" if self._key else " (no key given: --key or REACTOR_FUNCTION_KEY)"
            raise BackendError(f"{self.base}/{route}: {status} unauthorized{hint}")
        if status == 404:
            raise NotFound(error or f"{self.base}/{route}: not found")
        if status == 400:
            raise Refused(error or "bad request")
        raise BackendError(f"{self.base}/{route}: {status}" + (f": {error}" if error else ""))

    def _get(self, route: str, **params: Any) -> Any:
        return self._call("GET", route, params)[1]

    def status(self) -> list[dict[str, Any]]:
        return self._get("status")["status"]

    def rollouts(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        got = self._get("rollouts", endpoint=endpoint, limit=limit, continuation=continuation)
        return got["rollouts"], got["continuation"]

    def rollout(self, endpoint: str, rid: str) -> dict[str, Any]:
        return self._get("rollouts", endpoint=endpoint, rollout=rid)

    def records(self, kind: str | None, status: str | None, *, limit: int, continuation: str | None) -> Page:
        got = self._get("records", kind=kind, status=status, limit=limit, continuation=continuation)
        return got["records"], got["continuation"]

    def record(self, kind: str, key: str) -> dict[str, Any]:
        return self._get("records", kind=kind, key=key)["records"][0]

    def rejections(self) -> dict[str, Any]:
        return self._get("records", kind="rejections")["rejections"]

    def decisions(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        got = self._get("monitor", endpoint=endpoint, limit=limit, continuation=continuation)
        return got["decisions"], got["continuation"]

    def send(self, body: bytes) -> str:
        return self._call("POST", "commands", body=body)[1]["record"]


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
