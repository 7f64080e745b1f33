"""Loading registered MLflow models and scoring them with the MLflow scoring protocol.

A Databricks custom-model serving endpoint builds a container from the registered model
version and answers ``/invocations`` with MLflow's pyfunc scoring server
(``mlflow/pyfunc/scoring_server``, https://github.com/mlflow/mlflow).
Here the model version is looked up in the MLflow registry given to the workspace, its
artifacts are downloaded into the data directory, and it is loaded with
``mlflow.pyfunc.load_model``; scoring goes through ``mlflow.pyfunc.scoring_server.invocations``
so that input parsing, schema enforcement, error codes and the ``{"predictions": ...}``
response are the ones of MLflow's own scoring server.

Thread safety: the registry URI is passed explicitly to ``MlflowClient`` and to
``mlflow.artifacts.download_artifacts`` instead of being set through the process-wide
``mlflow.set_registry_uri``, so a load never disturbs other threads of the same process.
Loaded models are cached per ``(entity_name, entity_version)``; concurrent loads of the same
version wait for one another. mlflow is imported lazily (docs/architecture.md principle 9).

Feature spec: a model logged with its training set's feature lookups carries ``feature_spec.json``
at the root of its artifacts (``feature_lookup.FeatureSpec``, the local stand-in for what
``FeatureEngineeringClient.log_model`` records). It is read with the model and cached with it; a
malformed spec fails the deployment, as a model that cannot load does. ``score_frame`` scores the
rows after the features were looked up and joined.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from .errors import ApiError, does_not_exist, invalid_parameter, temporarily_unavailable
from .feature_lookup import FeatureSpec, FeatureSpecError
from .web import Request, Response, Router

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ModelLoadError(Exception):
    """A served entity could not be deployed; the message becomes its deployment_state_message."""


@dataclass
class LoadedModel:
    entity_name: str
    entity_version: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    local_path: Path
    load_seconds: float
    feature_spec: FeatureSpec | None = None  # feature_spec.json of the model, when it has one


@dataclass
class ScoreResult:
    status: int
    body: str  # JSON text
    error_code: str | None
    execution_ms: int


class ModelStore:
    """Cache of pyfunc models loaded from one MLflow registry."""

    def __init__(self, registry_uri: str, cache_dir: Path):
        self.registry_uri = registry_uri
        self.cache_dir = Path(cache_dir)
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def cached(self, entity_name: str, entity_version: str) -> LoadedModel | None:
        with self._guard:
            return self._models.get((entity_name, entity_version))

    def load(self, entity_name: str, entity_version: str) -> LoadedModel:
        """Return the loaded model version, loading it on first use. Raises ModelLoadError."""
        key = (entity_name, entity_version)
        with self._guard:
            if key in self._models:
                return self._models[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._guard:
                if key in self._models:
                    return self._models[key]
            loaded = self._load_uncached(entity_name, entity_version)
            with self._guard:
                self._models[key] = loaded
            return loaded

    def _load_uncached(self, entity_name: str, entity_version: str) -> LoadedModel:
        started = time.monotonic()
        try:
            import mlflow.artifacts
            import mlflow.pyfunc
            from mlflow import MlflowClient
            from mlflow.exceptions import MlflowException
        except ImportError as exc:  # pragma: no cover - mlflow is a dev requirement
            raise ModelLoadError(f"mlflow is not installed: {exc}") from exc

        client = MlflowClient(tracking_uri=self.registry_uri, registry_uri=self.registry_uri)
        try:
            version = client.get_model_version(entity_name, entity_version)
        except MlflowException as exc:
            raise ModelLoadError(
                f"Model version {entity_name}/{entity_version} was not found in the registry: {exc.message}"
            ) from exc
        status = str(getattr(version, "status", "READY") or "READY")
        if status != "READY":
            raise ModelLoadError(f"Model version {entity_name}/{entity_version} is in status {status}, not READY.")

        target = self.cache_dir / _SAFE.sub("_", entity_name) / _SAFE.sub("_", entity_version)
        try:
            if not (target / "MLmodel").exists():
                download_uri = client.get_model_version_download_uri(entity_name, entity_version)
                staging = target.with_name(target.name + f".partial-{threading.get_ident()}")
                shutil.rmtree(staging, ignore_errors=True)
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=download_uri,
                    dst_path=str(staging),
                    tracking_uri=self.registry_uri,
                    registry_uri=self.registry_uri,
                )
                local_path = Path(local)
                if not (local_path / "MLmodel").exists():
                    raise ModelLoadError(f"No MLmodel file in the artifacts of {entity_name}/{entity_version}.")
                shutil.rmtree(target, ignore_errors=True)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(local_path), str(target))
                shutil.rmtree(staging, ignore_errors=True)
            model = mlflow.pyfunc.load_model(str(target))
            feature_spec = FeatureSpec.load(target)
        except FeatureSpecError as exc:
            raise ModelLoadError(f"The feature spec of model {entity_name}/{entity_version} is invalid: {exc}") from exc
        except ModelLoadError:
            raise
        except Exception as exc:  # any failure to fetch or load the artifacts fails the deployment
            raise ModelLoadError(
                f"Failed to load model {entity_name}/{entity_version}: {type(exc).__name__}: {exc}"
            ) from exc
        return LoadedModel(entity_name, entity_version, model, target, time.monotonic() - started, feature_spec)


def score(model: Any, payload: dict[str, Any], content_type: str = "application/json") -> ScoreResult:
    """Score one request the way ``mlflow models serve`` does.

    The body must hold exactly one of ``dataframe_split``, ``dataframe_records``,
    ``instances`` or ``inputs``; anything else is ``400 BAD_REQUEST``. A model that raises
    during predict is ``400 BAD_REQUEST`` too, as in MLflow's scoring server; the message
    carries the model's own error so that the caller can see it.
    """
    from mlflow.pyfunc import scoring_server

    def run() -> tuple[int, str]:
        input_schema = model.metadata.get_input_schema()
        result = scoring_server.invocations(dict(payload), content_type, model, input_schema)
        return result.status, result.response

    return _scored(run)


def score_frame(model: Any, frame: Any, params: dict[str, Any] | None = None) -> ScoreResult:
    """Score rows that are already a DataFrame (the request joined with its looked-up features).

    The steps of MLflow's scoring server after parsing: ``predict`` (with ``params`` when the model
    takes them; the signature is enforced there) and ``predictions_to_json``. Errors are answered as
    by ``score``: a schema mismatch or a model that raises is ``400 BAD_REQUEST`` with the reason.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST
    from mlflow.pyfunc import scoring_server

    def run() -> tuple[int, str]:
        try:
            if params is not None and "params" in inspect.signature(model.predict).parameters:
                raw = model.predict(frame, params=params)
            else:
                raw = model.predict(frame)
        except MlflowException:
            raise
        except Exception as exc:
            raise MlflowException(
                "The model failed to predict the request rows joined with their looked-up features.",
                error_code=BAD_REQUEST,
            ) from exc
        out = StringIO()
        scoring_server.predictions_to_json(raw, out)
        return 200, out.getvalue()

    return _scored(run)


def _scored(run: Callable[[], tuple[int, str]]) -> ScoreResult:
    from mlflow.exceptions import MlflowException

    started = time.perf_counter()
    try:
        status, response = run()
    except MlflowException as exc:
        message = exc.message
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, MlflowException) and str(cause) not in message:
            message = f"{message} Model error: {type(cause).__name__}: {cause}"
        elapsed = int((time.perf_counter() - started) * 1000)
        code = exc.error_code or "BAD_REQUEST"
        status = exc.get_http_status_code()
        return ScoreResult(status, json.dumps({"error_code": code, "message": message}), code, elapsed)
    elapsed = int((time.perf_counter() - started) * 1000)
    if status != 200:
        # Content-type problems: mlflow answers 415 with plain text; keep the status, use a JSON body.
        body = json.dumps({"error_code": "BAD_REQUEST", "message": str(response)})
        return ScoreResult(status, body, "BAD_REQUEST", elapsed)
    return ScoreResult(200, response, None, elapsed)


def required_input_message() -> str:
    """MLflow's own wording for a body without exactly one input field."""
    from mlflow.pyfunc import scoring_server

    return scoring_server.REQUIRED_INPUT_FORMAT


def input_fields() -> set[str]:
    from mlflow.pyfunc import scoring_server

    return set(scoring_server.SUPPORTED_FORMATS)


class UnityCatalogModels:
    """The Unity Catalog model-registry API over the MLflow registry the workspace
    loads models from.

    A UC model ``catalog.schema.model`` is the MLflow registered model of that exact name, so a
    version registered there is what serving loads and what these endpoints describe. Routes, the
    ones ``w.model_versions`` / ``w.registered_models`` call and MLflow's native UC store
    (``/api/2.1/unity-catalog/*``) reads, with the fields of ``ModelVersionInfo`` /
    ``RegisteredModelInfo`` / ``RegisteredModelAlias``:

    - ``GET  /models/{full_name}`` (``include_aliases``)
    - ``GET  /models/{full_name}/versions`` (``max_results``, ``page_token``)
    - ``GET  /models/{full_name}/versions/{version}`` (``include_aliases``)
    - ``GET  /models/{full_name}/aliases/{alias}`` (``include_aliases``)
    - ``PUT  /models/{full_name}/aliases/{alias}`` with ``{"version_num": n}``
    - ``DELETE /models/{full_name}/aliases/{alias}`` (``w.registered_models.delete_alias``)

    These answers carry no tags: neither ``ModelVersionInfo`` nor ``RegisteredModelInfo`` has the
    field (SDK dataclasses; listed versions "will not contain any aliases or tags", SDK docstring
    of ``w.model_versions.list``). The listing's ``max_results`` is the SDK docstring's: unset or
    0 is a page of 100, above 1000 is 1000, below 0 is ``400 INVALID_PARAMETER_VALUE``.

    Version tags are served by the MLflow API for Unity Catalog models, the one MLflow's UC store
    calls (``mlflow.protos.databricks_uc_registry_service_pb2``), answering its ``ModelVersion``
    message (``databricks_uc_registry_messages.proto``: ``tags [{key, value}]``, ``aliases
    [{alias, version}]``, ``version`` a string):

    - ``GET /api/2.0/mlflow/unity-catalog/model-versions/get`` (``name``, ``version``)
    - ``GET /api/2.0/mlflow/unity-catalog/registered-models/alias`` (``name``, ``alias``)

    A name that is not three-level is ``400 INVALID_PARAMETER_VALUE``; a missing model, version or
    alias ``404 RESOURCE_DOES_NOT_EXIST`` [INF: the exact production messages were not recorded].
    """

    PREFIX = "/api/2.1/unity-catalog/models/{full_name}"
    MLFLOW_UC = "/api/2.0/mlflow/unity-catalog"
    PAGE, MAX_PAGE = 100, 1000

    def __init__(self, registry_uri: str, user: str):
        self.registry_uri = registry_uri
        self.user = user
        self._client: Any = None

    def register(self, router: Router) -> None:
        p = self.PREFIX
        router.add("GET", p, self._get_model)
        router.add("GET", p + "/versions", self._list_versions)
        router.add("GET", p + "/versions/{version}", self._get_version)
        router.add("GET", p + "/aliases/{alias}", self._get_by_alias)
        router.add("PUT", p + "/aliases/{alias}", self._set_alias)
        router.add("DELETE", p + "/aliases/{alias}", self._delete_alias)
        router.add("GET", self.MLFLOW_UC + "/model-versions/get", self._mlflow_get_version)
        router.add("GET", self.MLFLOW_UC + "/registered-models/alias", self._mlflow_get_by_alias)

    # ------------------------------------------------------------------ routes
    def _get_model(self, req: Request, full_name: str) -> Response:
        catalog, schema, name = _names(full_name)
        model = self._call(lambda c: c.get_registered_model(full_name))
        body = {"full_name": full_name, "name": name, "catalog_name": catalog, "schema_name": schema,
                "comment": model.description or "", "owner": self.user, "created_at": model.creation_timestamp,
                "updated_at": model.last_updated_timestamp}
        if _flag(req, "include_aliases"):
            body["aliases"] = [_alias(full_name, a, v) for a, v in sorted((model.aliases or {}).items())]
        return Response(body=body)

    def _list_versions(self, req: Request, full_name: str) -> Response:
        _names(full_name)
        versions = self._call(lambda c: c.search_model_versions(f"name='{full_name}'"))
        ordered = sorted(versions, key=lambda mv: int(mv.version))
        try:
            size = int(_param(req, "max_results") or 0)
            start = int(_param(req, "page_token") or 0)
        except ValueError as exc:
            raise invalid_parameter(f"max_results and page_token must be integers: {exc}") from exc
        if size < 0:
            raise invalid_parameter("max_results must not be negative.")
        page = ordered[start:start + (min(size, self.MAX_PAGE) or self.PAGE)]
        body: dict[str, Any] = {"model_versions": [self._version_info(full_name, mv, None) for mv in page]}
        if start + len(page) < len(ordered):
            body["next_page_token"] = str(start + len(page))
        return Response(body=body)

    def _get_version(self, req: Request, full_name: str, version: str) -> Response:
        _names(full_name)
        if not version.isdigit():
            raise invalid_parameter(f"version must be an integer, got {version!r}.")
        mv = self._call(lambda c: c.get_model_version(full_name, version))
        return Response(body=self._version_info(full_name, mv, self._aliases(req, full_name)))

    def _get_by_alias(self, req: Request, full_name: str, alias: str) -> Response:
        _names(full_name)
        model = self._call(lambda c: c.get_registered_model(full_name))
        version = (model.aliases or {}).get(alias)
        if version is None:
            raise does_not_exist(f"Alias {alias} does not exist on model {full_name}.")
        mv = self._call(lambda c: c.get_model_version(full_name, str(version)))
        return Response(body=self._version_info(full_name, mv, self._aliases(req, full_name)))

    def _set_alias(self, req: Request, full_name: str, alias: str) -> Response:
        _names(full_name)
        version = req.json().get("version_num")
        if isinstance(version, bool) or not isinstance(version, int | str) or not str(version).isdigit():
            raise invalid_parameter("version_num must be an integer.")
        self._call(lambda c: c.get_model_version(full_name, str(version)))
        self._call(lambda c: c.set_registered_model_alias(full_name, alias, str(version)))
        return Response(body=_alias(full_name, alias, str(version)))

    def _delete_alias(self, req: Request, full_name: str, alias: str) -> Response:
        _names(full_name)
        self._call(lambda c: c.get_model_version_by_alias(full_name, alias))
        self._call(lambda c: c.delete_registered_model_alias(full_name, alias))
        return Response(body={})

    def _mlflow_get_version(self, req: Request) -> Response:
        full_name, version = _required(req, "name"), _required(req, "version")
        _names(full_name)
        if not version.isdigit():
            raise invalid_parameter(f"version must be an integer, got {version!r}.")
        mv = self._call(lambda c: c.get_model_version(full_name, version))
        return Response(body={"model_version": self._mlflow_version(full_name, mv)})

    def _mlflow_get_by_alias(self, req: Request) -> Response:
        full_name, alias = _required(req, "name"), _required(req, "alias")
        _names(full_name)
        mv = self._call(lambda c: c.get_model_version_by_alias(full_name, alias))
        return Response(body={"model_version": self._mlflow_version(full_name, mv)})

    # ------------------------------------------------------------------ helpers
    def _mlflow_version(self, full_name: str, mv: Any) -> dict[str, Any]:
        """MLflow's UC ``ModelVersion`` message for ``mv`` (proto names, ``version`` a string)."""
        model = self._call(lambda c: c.get_registered_model(full_name))
        return {
            "name": full_name, "version": str(mv.version), "creation_timestamp": mv.creation_timestamp,
            "last_updated_timestamp": mv.last_updated_timestamp, "user_id": self.user,
            "description": mv.description or "", "source": mv.source, "run_id": mv.run_id or "",
            "status": str(mv.status), "status_message": mv.status_message or "", "storage_location": mv.source,
            "aliases": [{"alias": a, "version": str(v)} for a, v in sorted((model.aliases or {}).items())
                        if str(v) == str(mv.version)],
            "tags": [{"key": k, "value": v} for k, v in sorted((mv.tags or {}).items())],
        }

    def _aliases(self, req: Request, full_name: str) -> dict[str, str] | None:
        if not _flag(req, "include_aliases"):
            return None
        model = self._call(lambda c: c.get_registered_model(full_name))
        return dict(model.aliases or {})

    def _version_info(self, full_name: str, mv: Any, aliases: dict[str, str] | None) -> dict[str, Any]:
        catalog, schema, name = _names(full_name)
        body: dict[str, Any] = {
            "model_name": name, "catalog_name": catalog, "schema_name": schema, "version": int(mv.version),
            "status": str(mv.status), "source": mv.source, "run_id": mv.run_id, "comment": mv.description or "",
            "storage_location": mv.source, "created_at": mv.creation_timestamp, "created_by": self.user,
            "updated_at": mv.last_updated_timestamp, "updated_by": self.user, "id": f"{full_name}/{mv.version}",
        }
        if aliases is not None:
            body["aliases"] = [_alias(full_name, a, v) for a, v in sorted(aliases.items()) if str(v) == str(mv.version)]
        return body

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn`` on the MLflow registry; its not-found answers become UC's 404."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.registry_uri, registry_uri=self.registry_uri)
        try:
            return fn(self._client)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise does_not_exist(exc.message) from exc
            raise invalid_parameter(exc.message) from exc


def _names(full_name: str) -> tuple[str, str, str]:
    parts = full_name.split(".")
    if len(parts) != 3 or not all(parts):
        raise invalid_parameter(f"Model name {full_name!r} is not a three-level name catalog.schema.model.")
    return parts[0], parts[1], parts[2]


def _alias(full_name: str, alias: str, version: str) -> dict[str, Any]:
    catalog, schema, name = _names(full_name)
    return {"alias_name": alias, "version_num": int(version), "catalog_name": catalog, "schema_name": schema,
            "model_name": name, "id": f"{full_name}@{alias}"}


def _param(req: Request, name: str) -> str | None:
    values = req.query.get(name)
    return values[-1] if values else None


def _required(req: Request, name: str) -> str:
    value = _param(req, name)
    if not value:
        raise invalid_parameter(f"Missing required parameter: {name}.")
    return value


def _flag(req: Request, name: str) -> bool:
    # The SDK sends query-string booleans as "true"/"false".
    return (_param(req, name) or "").lower() == "true"


class WorkspaceRegistry:
    """The workspace model registry API (``/api/2.0/mlflow/registered-models/*`` and
    ``/api/2.0/mlflow/model-versions/*``): Databricks serves MLflow's own REST API there, so a
    request is passed on, as it came, to the MLflow server the workspace loads models from. A
    registry that is not an ``http(s)://`` server has no such API here (``404 ENDPOINT_NOT_FOUND``).

    Except aliases, which the workspace registry does not have: MLflow's store for it refuses
    ``set_registered_model_alias``, ``delete_registered_model_alias`` and
    ``get_model_version_by_alias`` ("unsupported for models in the Workspace Model Registry",
    ``mlflow.store.model_registry.databricks_workspace_model_registry_rest_store``), so
    ``registered-models/alias`` is answered as an API that does not exist, whatever the MLflow
    server behind would do [INF: the platform's own answer to a raw request was not recorded].
    """

    GROUPS = ("registered-models", "model-versions")
    NO_ALIASES = "/api/2.0/mlflow/registered-models/alias"

    def __init__(self, registry_uri: str, timeout_seconds: float = 30.0):
        self.registry_uri = registry_uri.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def register(self, router: Router) -> None:
        for method in ("GET", "POST", "PATCH", "DELETE"):
            for template in ("/api/2.0/mlflow/{group}/{action}", "/api/2.0/mlflow/{group}/{action}/{detail}"):
                router.add(method, template, self._forward)

    def _forward(self, req: Request, group: str, **_: str) -> Response:
        import requests

        if (group not in self.GROUPS or req.path == self.NO_ALIASES
                or not self.registry_uri.startswith(("http://", "https://"))):
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{req.method} {req.path}'")
        try:
            answer = requests.request(req.method, self.registry_uri + req.path, params=req.query, data=req.body,
                                      headers={"Content-Type": req.headers.get("content-type", "application/json")},
                                      timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise temporarily_unavailable(f"The model registry is not reachable: {type(exc).__name__}") from exc
        return Response(answer.status_code, answer.content,
                        content_type=answer.headers.get("Content-Type", "application/json"))
