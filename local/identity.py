"""A local stand-in for the App Service managed-identity endpoint (``IDENTITY_ENDPOINT``).

It answers the request azure-identity's ``ManagedIdentityCredential`` makes on App Service and
Azure Functions (azure-identity 1.27 ``_credentials/app_service.py`` through MSAL 1.39
``managed_identity._obtain_token_on_app_service``):

- ``GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>`` with the header
  ``X-IDENTITY-HEADER: <IDENTITY_HEADER>``; a user-assigned identity adds ``client_id``
  (``mi_res_id`` and ``object_id`` are the other selectors; they are refused here).
- ``200 {"access_token", "expires_on", "resource", "token_type": "Bearer", "client_id"}`` with
  ``expires_on`` in epoch seconds as a string, as App Service sends it; MSAL turns it into
  ``expires_in``.
- Errors are ``{"statusCode", "message"}``, the shape MSAL reads into its error description:
  no ``X-IDENTITY-HEADER`` is 400, a wrong one 401 [INF: App Service's exact codes and texts
  for these are not documented]; another ``api-version``, no ``resource`` or an identity that
  is not assigned are 400.

Tokens are JWTs as Entra ID's are (claims ``aud`` = the resource, ``appid``/``oid`` = the
identity's client id, ``tid``, ``iat``, ``exp``), signed with HS256 under a key only this object
holds; ``verify`` checks the signature, the audience and the expiry, which is how the local
workspace checks them (``LocalWorkspace(identity=)``).
``issued`` counts the tokens handed out. Neither the header nor a token is ever logged.

Never imported by the app; only by local tooling and tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("local.identity")

API_VERSION = "2019-08-01"
TOKEN_PATH = "/msi/token"
# The identity the stand-in is, when no user-assigned client id is asked for, and its tenant.
SYSTEM_ASSIGNED = "00000000-0000-0000-0000-00000000a5a1"
TENANT = "00000000-0000-0000-0000-0000000000e1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ManagedIdentityEndpoint:
    """The App Service token endpoint of one app, on ``127.0.0.1:<port>`` (``port=0`` picks one).

    ``client_ids`` are the user-assigned identities the app has (its system-assigned identity
    is always there); ``lifetime_seconds`` is how long a token is valid.
    """

    def __init__(self, *, header: str | None = None, client_ids: Iterable[str] = (), lifetime_seconds: float = 3600,
                 host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.header = header or secrets.token_urlsafe(24)
        self.client_ids = frozenset(client_ids)
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._host, self._port = host, port
        self._key = secrets.token_bytes(32)
        self._issued_tokens: list[str] = []
        self._lock = threading.Lock()
        self.refused = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the identity endpoint is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{TOKEN_PATH}"

    def env(self, client_id: str | None = None) -> dict[str, str]:
        """The app settings App Service sets for an app with this identity."""
        values = {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}
        if client_id:
            values["AZURE_CLIENT_ID"] = client_id
        return values

    def start(self) -> ManagedIdentityEndpoint:
        if self._server is None:
            server = _Server((self._host, self._port), _Handler)
            server.identity = self
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, name="local-identity", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ManagedIdentityEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ tokens
    def verify(self, token: str, resource: str) -> bool:
        """Whether ``token`` was signed here, for ``resource``, and has not expired."""
        head, _, rest = token.partition(".")
        body, _, signature = rest.partition(".")
        expected = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        if not (head and body and hmac.compare_digest(signature.encode(), expected.encode())):
            return False
        claims = json.loads(_unb64(body))
        return claims.get("aud") == resource and self.clock() < float(claims.get("exp", 0))

    @property
    def issued(self) -> int:
        """How many tokens were handed out."""
        with self._lock:
            return len(self._issued_tokens)

    def tokens(self) -> list[str]:
        """Every token issued so far (for tests that check none leaked)."""
        with self._lock:
            return list(self._issued_tokens)

    def _sign(self, claims: dict[str, Any]) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        return f"{head}.{body}." + _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())

    def answer(self, query: dict[str, list[str]], header: str | None) -> tuple[int, dict[str, Any]]:
        """The status and JSON body App Service gives for one token request."""
        if header is None:
            return self._refuse(400, "Missing X-IDENTITY-HEADER header.")
        if not hmac.compare_digest(header.encode(), self.header.encode()):
            return self._refuse(401, "The X-IDENTITY-HEADER value is not valid for this app.")
        params = {k: v[-1] for k, v in query.items() if v}
        if params.get("api-version") != API_VERSION:
            return self._refuse(400, f"api-version must be {API_VERSION}.")
        resource = params.get("resource")
        if not resource:
            return self._refuse(400, "The resource parameter is required.")
        if "mi_res_id" in params or "object_id" in params:
            return self._refuse(400, "Only client_id selects a user-assigned identity here.")
        client_id = params.get("client_id") or SYSTEM_ASSIGNED
        if client_id != SYSTEM_ASSIGNED and client_id not in self.client_ids:
            return self._refuse(400, "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.")
        now = self.clock()
        expires_at = now + self.lifetime_seconds
        token = self._sign({"aud": resource, "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT,
                            "appid": client_id, "oid": client_id, "sub": client_id, "iat": int(now),
                            "exp": int(expires_at), "jti": secrets.token_urlsafe(12)})
        with self._lock:
            self._issued_tokens.append(token)
        return 200, {"access_token": token, "expires_on": str(int(expires_at)), "resource": resource,
                     "token_type": "Bearer", "client_id": client_id}

    def _refuse(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refused += 1
        log.info("identity endpoint refused a token request: %s", message)
        return status, {"statusCode": status, "message": message}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    identity: ManagedIdentityEndpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != TOKEN_PATH:
            status, body = 404, {"statusCode": 404, "message": "Not found."}
        else:
            status, body = self.server.identity.answer(parse_qs(parts.query), self.headers.get("X-IDENTITY-HEADER"))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries no secret (the header does), but stay quiet like the workspace.
        log.debug("%s - %s", self.address_string(), format % args)
