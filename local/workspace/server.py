"""The local workspace: an HTTP server answering part of the Databricks workspace REST API.

``databricks-sdk`` (https://github.com/databricks/databricks-sdk-py) works against it unchanged:
``WorkspaceClient(host=ws.url, token=...)``.
Cross-cutting behaviour:

- ``GET /.well-known/databricks-config`` answers ``200 {}`` without auth, so the SDK's host
  metadata lookup at construction returns at once and sets nothing.
- Every ``/api/...``, ``/serving-endpoints/...`` and ``/local/...`` request needs
  ``Authorization: Bearer <token>``; otherwise ``401 UNAUTHENTICATED`` (-> SDK ``Unauthenticated``).
  The token is the workspace's PAT, or, in identity mode (``identity=``), only an Entra ID token
  for the Azure Databricks resource (Azure Databricks, "Get Microsoft Entra ID tokens for service
  principals", https://learn.microsoft.com/en-us/azure/databricks/dev-tools/service-prin-aad-token) that
  the identity stand-in issued and that
  has not expired; a PAT is then refused, as a workspace that only trusts Entra ID would.
  ``X-Databricks-Workspace-Id`` is accepted and ignored.
- Errors are ``{"error_code", "message"}`` with the status paired to each code.
  An unknown path is ``404 ENDPOINT_NOT_FOUND``. Bad input never yields a 500.
- Faults (``ws.faults``; also ``GET/POST /local/faults``): latency on every API call, and
  429/503 answers that the SDK retries.

Not imported by the app; only by local tooling and tests.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import traceback
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from .access import AccessService
from .catalog import UnityCatalog
from .data_quality import DataQualityService
from .database import DatabaseService
from .errors import ApiError, request_limit_exceeded, temporarily_unavailable, unauthenticated
from .faults import Faults
from .feature_store import FeatureStoreService
from .inference_table import InferenceTables
from .jobs import JobsService
from .models import ModelStore, UnityCatalogModels, WorkspaceRegistry
from .online_catalog import OnlineCatalog
from .serving import ServingService
from .sql import StatementService
from .sync import SyncEngine
from .web import Request, Response, Router

log = logging.getLogger("local.workspace")

WELL_KNOWN = "/.well-known/databricks-config"
_AUTH_PREFIXES = ("/api/", "/serving-endpoints/", "/local/")
_FAULT_PREFIXES = ("/api/", "/serving-endpoints/")
# Entra ID application of Azure Databricks: the resource its tokens are issued for.
AZURE_DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"


class TokenVerifier(Protocol):
    """What identity mode needs of an issuer (``local.identity.ManagedIdentityEndpoint``)."""

    def verify(self, token: str, resource: str) -> bool: ...


class LocalWorkspace:
    """A local stand-in for a Databricks workspace (model serving part).

    ``registry_uri`` is the MLflow tracking/registry URI the served models are loaded from
    (``http://127.0.0.1:5000`` or ``sqlite:///...``). ``data_dir`` holds downloaded model
    artifacts and the Unity Catalog tables, inference tables included (``ws.inference``:
    delivered every ``ws.inference.delivery_seconds``; ``ws.inference.flush()`` delivers now).

    The data plane: Unity Catalog tables are Delta tables under ``data_dir/uc`` (``ws.catalog``
    is also the local tooling API that creates and changes them); SQL statements run on DuckDB
    over them; online stores and synced tables live in the database at ``online_store_url``
    (default ``sqlite:///<data_dir>/online_store.sqlite``; ``postgresql://...`` for Lakebase).
    Unity Catalog models (``/api/2.1/unity-catalog/models/...``, and the version reads with tags of
    ``/api/2.0/mlflow/unity-catalog/...``) are the registered models of that same registry
    (``models.UnityCatalogModels``); so is the workspace registry (without aliases)
    (``/api/2.0/mlflow/...``, passed on to an ``http://`` registry: ``models.WorkspaceRegistry``).

    ``identity`` switches to identity mode: bearer tokens are checked with ``identity.verify``
    and ``token`` is not accepted.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "local-token",
        registry_uri: str = "sqlite:///mlflow.db",
        data_dir: Path | str = Path(".local/workspace"),
        *,
        user: str = "local-user@localhost",
        seed: int = 0,
        online_store_url: str | None = None,
        identity: TokenVerifier | None = None,
    ):
        self.host = host
        self.port = port
        self.token = token
        self.identity = identity
        self.registry_uri = registry_uri
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.lock = threading.RLock()  # one lock for the whole workspace state
        self.faults = Faults(seed=seed)
        self.request_log: deque[tuple[str, str, int]] = deque(maxlen=2000)  # (method, path, status)
        self._answered = 0  # requests answered since start: the log keeps only the newest 2000
        self._log_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.models = ModelStore(registry_uri, self.data_dir / "models")
        self.catalog = UnityCatalog(self.data_dir / "uc", user=user)
        self.inference = InferenceTables(self.catalog)
        # Where published feature tables live online; serving endpoints look features up through it.
        self.online_catalog = OnlineCatalog()
        self.serving = ServingService(
            lock=self.lock,
            faults=self.faults,
            models=self.models,
            inference=self.inference,
            base_url=lambda: self.url,
            user=user,
            stopping=self._stopping,
            online_catalog=self.online_catalog,
            seed=seed,
        )
        self.online_store_url = online_store_url or f"sqlite:///{(self.data_dir / 'online_store.sqlite').resolve()}"
        self.statements = StatementService(self.catalog, lock=self.lock, stopping=self._stopping, faults=self.faults)
        self.sync = SyncEngine(catalog=self.catalog, online_catalog=self.online_catalog,
                               store_url=self.online_store_url, lock=self.lock, faults=self.faults,
                               stopping=self._stopping, user=user)
        self.feature_store = FeatureStoreService(lock=self.lock, faults=self.faults, catalog=self.catalog,
                                                 engine=self.sync, user=user)
        self.database = DatabaseService(catalog=self.catalog, engine=self.sync)
        self.uc_models = UnityCatalogModels(registry_uri, user)
        self.workspace_registry = WorkspaceRegistry(registry_uri)
        self.router = Router()
        self.serving.register(self.router)
        for service in (self.catalog, self.statements, self.sync, self.feature_store, self.database, self.uc_models,
                        self.workspace_registry):
            service.register(self.router)
        self.router.add("GET", "/local/faults", self._get_faults)
        self.router.add("POST", "/local/faults", self._post_faults)
        self.jobs = JobsService(self.data_dir, base_url=lambda: self.url, registry_uri=registry_uri, user=user,
                                stopping=self._stopping)
        self.jobs.register(self.router)
        self.data_quality = DataQualityService(self.catalog, stopping=self._stopping)
        self.data_quality.register(self.router)
        self.access = AccessService(user=user, catalog=self.catalog, exists=self._object_exists)
        self.access.register(self.router)

    def _object_exists(self, object_type: str, object_id: str) -> bool:
        """A serving endpoint (by id) or a job, for the permissions routes."""
        if object_type == "jobs":
            return object_id.isdigit() and int(object_id) in self.jobs.job_ids()
        return any(ep.id == object_id for ep in self.serving.endpoints())

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            return f"http://{self.host}:{self.port}"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def request_mark(self) -> int:
        """A mark for ``requests_since``: how many requests were answered until now."""
        with self._log_lock:
            return self._answered

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        """The requests answered since ``mark`` (``request_mark``), oldest first: a long-lived
        workspace's log is full, so its length says nothing about what came after a point."""
        with self._log_lock:
            n = self._answered - mark
            if n > len(self.request_log):
                raise RuntimeError(f"{n} requests since the mark, the log keeps {len(self.request_log)}")
            return list(self.request_log)[len(self.request_log) - n:] if n else []

    def start(self) -> LocalWorkspace:
        """Serve in background threads; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.workspace = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name=f"local-workspace-{self.port}", daemon=True)
        self._thread.start()
        self.sync.resume()
        self.inference.start()
        log.info("local workspace serving at %s", self.url)
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.serving.join(timeout=5)
        self.inference.stop()
        self.statements.join(timeout=5)
        self.sync.join(timeout=10)
        self.jobs.join(timeout=10)

    def __enter__(self) -> LocalWorkspace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reseed(self, seed: int) -> None:
        """Reseed both the fault draws and the traffic routing."""
        self.faults.reseed(seed)
        self.serving.reseed(seed)

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, req: Request) -> Response:
        try:
            response = self._dispatch(req)
        except ApiError as err:
            response = Response.error(err)
        except Exception as exc:  # a bug here, never bad input: keep serving, say what happened
            log.error("unhandled error on %s %s\n%s", req.method, req.path, traceback.format_exc())
            response = Response(500, {"error_code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"})
        with self._log_lock:
            self.request_log.append((req.method, req.path, response.status))
            self._answered += 1
        return response

    def _dispatch(self, req: Request) -> Response:
        path = req.path
        if path == WELL_KNOWN and req.method == "GET":
            # Host metadata: {} sets nothing and needs no auth.
            return Response(body={})
        if path.startswith(_AUTH_PREFIXES):
            self._authenticate(req)
        if path.startswith(_FAULT_PREFIXES):
            self._inject_faults()
        found = self.router.match(req.method, path)
        if found is None:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{req.method} {path}'")
        handler, params = found
        return handler(req, **{k: unquote(v) for k, v in params.items()})

    def _authenticate(self, req: Request) -> None:
        header = req.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            raise unauthenticated("Credential was not sent or was of an unsupported type for this API.")
        credential = credential.strip()
        if self.identity is not None:
            accepted = self.identity.verify(credential, AZURE_DATABRICKS_RESOURCE)
        else:
            accepted = hmac.compare_digest(credential.encode(), self.token.encode())
        # A job run calls with a token of its own (jobs.py), in either mode.
        if not (accepted or self.jobs.accepts(credential)):
            raise unauthenticated("Invalid access token.")

    def _inject_faults(self) -> None:
        faults = self.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000.0)
        if faults.roll(faults.rate_429):
            raise request_limit_exceeded("Too many requests (injected fault rate_429). Retry later.", 1)
        if faults.roll(faults.rate_503):
            raise temporarily_unavailable("The service is temporarily unavailable (injected fault rate_503).")

    # ------------------------------------------------------------------ /local/faults
    def _get_faults(self, req: Request) -> Response:
        return Response(body=self.faults.as_dict())

    def _post_faults(self, req: Request) -> Response:
        body = req.json()
        self.faults.update(body)
        if "seed" in body:
            self.serving.reseed(int(body["seed"]))
        return Response(body=self.faults.as_dict())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    workspace: LocalWorkspace


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits for
    # the delayed ACK (~40 ms) on every response. Databricks adds no such delay.
    disable_nagle_algorithm = True
    server: _Server
    server_version = "LocalDatabricksWorkspace/0.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        req = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.workspace.dispatch(req)
        payload = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
