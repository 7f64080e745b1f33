"""Loading registered MLflow models and scoring them with the MLflow scoring protocol.

A Databricks custom-model serving endpoint builds a container from the registered model
version and answers ``/invocations`` with MLflow's pyfunc scoring server (reference §1.5).
Here the model version is looked up in the MLflow registry given to the workspace, its
artifacts are downloaded into the data directory, and it is loaded with
``mlflow.pyfunc.load_model``; scoring goes through ``mlflow.pyfunc.scoring_server.invocations``
so that input parsing, schema enforcement, error codes and the ``{"predictions": ...}``
response are the ones of MLflow's own scoring server.

Thread safety: the registry URI is passed explicitly to ``MlflowClient`` and to
``mlflow.artifacts.download_artifacts`` instead of being set through the process-wide
``mlflow.set_registry_uri``, so a load never disturbs other threads of the same process.
Loaded models are cached per ``(entity_name, entity_version)``; concurrent loads of the same
version wait for one another. mlflow is imported lazily (DESIGN.md principle 9).

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

from .feature_lookup import FeatureSpec, FeatureSpecError

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
    """Score one request the way ``mlflow models serve`` does (reference §1.5).

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
