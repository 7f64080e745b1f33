"""The CLI's HTTP backend: the app's operators' routes (``GET /api/status``, ``/api/rollouts``,
``/api/records``, ``/api/monitor``, ``POST /api/commands``; triggers/http.py), FUNCTION auth level,
with the key sent as ``x-functions-key`` (never in the URL, where proxies and logs keep it). Plain
``urllib``: the CLI needs no HTTP library of its own.

Redirects are not followed: urllib's ``HTTPRedirectHandler.redirect_request`` sends the new
request with all the old one's headers but the content ones, so the key would go wherever a
``Location`` points, another host included. The app's routes never redirect; a redirect is
reported with where it points, and the operator decides whether that address gets the key."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from reactor.backend import Backend, BackendError, NotFound, Page, Refused
from shared.redaction import redact

TIMEOUT_SECONDS = 30.0
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every redirect comes back as an ``HTTPError`` with its status and ``Location``."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpBackend(Backend):
    def __init__(self, url: str, key: str | None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BackendError(f"--url {url!r}: expected http(s)://host/api")
        self.base = url.rstrip("/")
        self._key = key
        self._opener = urllib.request.build_opener(_NoRedirect)

    def _call(self, method: str, route: str, params: dict[str, Any] | None = None,
              body: bytes | None = None) -> tuple[int, Any]:
        query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.base}/{route}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"x-functions-key": self._key} if self._key else {})})
        try:
            with self._opener.open(req, timeout=TIMEOUT_SECONDS) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code in _REDIRECTS:
                raise _redirected(url, exc.code, exc.headers.get("Location")) from None
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


def _redirected(url: str, status: int, location: str | None) -> BackendError:
    """The error for a redirect not followed, naming where it points (redacted: a Location may
    carry a signed URL's ``sig=``)."""
    if not location:
        return BackendError(f"{url}: {status} redirect without a Location; not followed")
    target = urllib.parse.urljoin(url, location)
    here, there = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
    same = _origin(here) == _origin(there)
    where = "on the same origin" if same else f"to another origin than {here.scheme}://{here.netloc}"
    return BackendError(f"{url}: {status} redirect {where}: {redact(target)}. Not followed, so that the function key "
                        "is sent nowhere else; give --url the address you trust")


def _origin(url: urllib.parse.SplitResult) -> tuple[str, str | None, int | None]:
    """Scheme, host and port (the scheme's default when none is written): RFC 6454 §4."""
    return url.scheme, url.hostname, url.port or {"http": 80, "https": 443}.get(url.scheme)


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
