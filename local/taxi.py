"""A small real model on synthetic taxi-fare data, registered in an MLflow model registry.

Nothing is downloaded: ``make_trips`` draws trips from a fixed fare formula plus noise.
``train_and_register`` fits a scikit-learn gradient-boosting regressor and registers it;
``register_broken_version`` registers a version that loads but fails at predict time, the
case a rollout must catch with its smoke queries.

Feature tables: ``pickup_zone_features`` / ``dropoff_zone_features`` aggregate trips per zone
(average fare, trip count, average distance; primary key ``zone_id``), ``publish_features``
writes such a frame to an online store, and ``train_and_register_with_features`` trains on trip
features plus the zone features of each trip's pickup and dropoff zone (joined locally at training
time, as ``create_training_set`` does) and logs the model with a ``feature_spec.json``
(``local.workspace.feature_lookup``) so that a serving endpoint looks those features up itself:
the client sends only ``request_records`` (zone IDs and the trip's own features).
``train_on_trips_with_features`` does the same for trips given by the caller (the retraining job's
labelled requests, ``local/jobs/retrain_taxi.py``).

MLflow behaviour relied on (mlflow 3.17):

- ``mlflow.sklearn.log_model(..., name=..., registered_model_name=...)`` logs a LoggedModel
  attached to the active run and registers it from ``models:/<model_id>``; the returned
  ``ModelInfo.registered_model_version`` is the new version. SQL-backed registries create
  versions READY at once, so the wait for READY ends immediately.
- The sklearn flavor serializes with ``cloudpickle`` in Databricks Runtime (the target) and
  with ``skops`` elsewhere. Here ``cloudpickle`` is the default: the 120-tree model is about
  160 kB that way and about 3 MB as skops. ``serialization_format="skops"`` also works: skops
  does not trust ``sklearn.tree._tree.Tree`` by default (MLflow reloads the file at save time
  and refuses), so ``skops_trusted_types`` names exactly that type, and MLflow stores the list
  in the MLmodel file for ``mlflow.pyfunc.load_model`` in any other process. Loading either
  format needs ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` left at its default ``true``.
- ``pip_requirements`` is given explicitly (the flavor's own defaults), which skips MLflow's
  requirement inference (a subprocess that loads the model: seconds per log).
- The broken version is a "model from code": ``python_model`` is the path of a script that
  calls ``mlflow.models.set_model``. The script is stored with the model, so loading it needs
  neither this module nor the repository on ``sys.path``.
- Feature lookups (``train_and_register_with_features``): the model is logged first without
  registering, ``feature_spec.json`` is uploaded to the root of the LoggedModel's artifacts with
  ``MlflowClient.log_model_artifact``, and only then is ``models:/<model_id>`` registered, so every
  registered version carries its spec. Its signature describes the joined rows the model scores
  (trip features + looked-up zone features, those as ``double`` so that a zone without a row can
  be sent as NaN); its input example holds only what a client sends. ``Model.log`` checks an
  input example by predicting with it, which fails for IDs-only rows and only logs a warning
  ("Failed to validate serving input example"); that one warning is filtered out for the call,
  since the serving side, not the model, joins the features. (``Model.log`` would skip the check
  given ``validate_serving_input=False``, but the sklearn flavor passes its ``**kwargs`` on to
  ``save_model`` too, which refuses the argument.)
- The tracking and registry URIs are process-global in MLflow (and mirrored in the
  ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` environment variables). Each function
  sets both to the given URI for the duration of the call and restores the previous values,
  the same way mlflow's own ``_use_tracking_uri`` does, so callers may talk to several
  servers. Runs are opened with ``with mlflow.start_run()`` and so always ended; starting one
  while the caller has an active run raises (MLflow refuses to start a second active run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

FEATURES = ["trip_distance", "passenger_count", "pickup_hour", "pickup_zone", "dropoff_zone"]
TARGET = "fare_amount"
N_ZONES = 30
AIRPORT_ZONES = (1, 2)
# skops refuses tree node storage unless trusted explicitly (it cannot bounds-check node
# indices); we wrote the file ourselves, so trust exactly that type.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
BROKEN_MESSAGE = "taxi_fare broken version: predict always fails (injected fault)"

# Feature-lookup variant: what the client sends, and what the serving side looks up per zone.
ZONE_KEY = "zone_id"
ZONE_FEATURES = ["avg_fare", "trip_count", "avg_distance"]
TRIP_FEATURES = ["trip_distance", "passenger_count", "pickup_hour"]
REQUEST_COLUMNS = ["pickup_zone", "dropoff_zone", *TRIP_FEATURES]
PICKUP_FEATURES = [f"pickup_{name}" for name in ZONE_FEATURES]
DROPOFF_FEATURES = [f"dropoff_{name}" for name in ZONE_FEATURES]
FEATURE_MODEL_INPUTS = [*TRIP_FEATURES, *PICKUP_FEATURES, *DROPOFF_FEATURES]
FEATURE_SPEC_FILE = "feature_spec.json"

# Timing of the last train_and_register call, for reports.
last_timings: dict[str, float] = {}


def make_trips(n: int = 2000, seed: int | Sequence[int] = 0, *, drifted: bool = False) -> pd.DataFrame:
    """Synthetic taxi trips with a plausible fare.

    ``drifted``: the city changed (say, a new suburb line opened): trips are about 2.5 times as
    long and start in the five outer zones; the fare rule is the same.

    fare = 3.00 base + 1.75 per km + congestion (rush hours 7-9 and 16-19: +0.45 per km)
    + 0.50 per passenger beyond the first + 1.00 night surcharge (20:00-05:59)
    + 5.00 airport surcharge when the pickup or dropoff zone is an airport zone,
    times lognormal noise (sigma 0.08) plus normal noise (sd 0.50), never below 3.00.
    Deterministic for a given (n, seed); ``seed`` is an int or a sequence of ints (the entropy
    of a ``numpy.random.SeedSequence``, so (s, 0), (s, 1), … give independent streams).
    """
    rng = np.random.default_rng(seed)
    distance = np.round(np.clip(rng.lognormal(mean=2.2 if drifted else 1.3, sigma=0.7, size=n), 0.3, 60.0), 2)
    passengers = rng.choice([1, 2, 3, 4, 5, 6], size=n, p=[0.62, 0.18, 0.08, 0.05, 0.04, 0.03])
    hour_weights = np.array([2, 1, 1, 1, 1, 2, 3, 6, 7, 6, 5, 5, 5, 5, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3], dtype=float)
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    pickup_zone = rng.integers(N_ZONES - 4 if drifted else 1, N_ZONES + 1, size=n)
    dropoff_zone = rng.integers(1, N_ZONES + 1, size=n)

    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 19))
    night = (hour >= 20) | (hour <= 5)
    airport = np.isin(pickup_zone, AIRPORT_ZONES) | np.isin(dropoff_zone, AIRPORT_ZONES)
    fare = 3.00 + 1.75 * distance + 0.45 * distance * rush + 0.50 * (passengers - 1) + 1.00 * night + 5.00 * airport
    fare = fare * rng.lognormal(mean=0.0, sigma=0.08, size=n) + rng.normal(0.0, 0.5, size=n)
    fare = np.round(np.maximum(fare, 3.00), 2)
    return pd.DataFrame(
        {
            "trip_distance": distance.astype("float64"),
            "passenger_count": passengers.astype("int64"),
            "pickup_hour": hour.astype("int64"),
            "pickup_zone": pickup_zone.astype("int64"),
            "dropoff_zone": dropoff_zone.astype("int64"),
            TARGET: fare.astype("float64"),
        }
    )


def trip_stream(seed: int | Sequence[int], *, drifted: bool = False, chunk: int = 500) -> Iterator[dict[str, Any]]:
    """Request records (``REQUEST_COLUMNS``) of independent trips without end: chunk k is
    ``make_trips(chunk, seed=(*seed, k))``. No chunk is sent twice: a window of callers'
    traffic is then a sample of independent trips, which the drift tests assume (repeating the
    same trips would make a large window look like more evidence than it holds).
    """
    prefix = (seed,) if isinstance(seed, int) else tuple(seed)
    k = 0
    while True:
        frame = make_trips(n=chunk, seed=(*prefix, k), drifted=drifted)[REQUEST_COLUMNS]
        yield from json.loads(frame.to_json(orient="records"))
        k += 1


def sample_records(n: int = 3, seed: int = 1) -> list[dict[str, Any]]:
    """JSON-able feature records (no target) for smoke queries: plain int and float values."""
    frame = make_trips(n=n, seed=seed)[FEATURES]
    return json.loads(frame.to_json(orient="records"))


def request_records(n: int = 3, seed: int = 1) -> list[dict[str, Any]]:
    """JSON-able records for a model trained by ``train_and_register_with_features``: zone IDs and
    the trip's own features only (the zone features are looked up by the endpoint)."""
    frame = make_trips(n=n, seed=seed)[REQUEST_COLUMNS]
    return json.loads(frame.to_json(orient="records"))


# -- zone feature tables ------------------------------------------------------------------------
def zone_features(trips: pd.DataFrame, zone_column: str) -> pd.DataFrame:
    """Per-zone aggregates of ``trips`` grouped by ``zone_column``: ``zone_id`` (primary key),
    ``avg_fare``, ``trip_count``, ``avg_distance``. One row per zone that has trips, by zone."""
    grouped = trips.groupby(zone_column, sort=True)
    return pd.DataFrame(
        {
            ZONE_KEY: grouped.size().index.to_numpy().astype("int64"),
            "avg_fare": grouped[TARGET].mean().round(4).to_numpy().astype("float64"),
            "trip_count": grouped.size().to_numpy().astype("int64"),
            "avg_distance": grouped["trip_distance"].mean().round(4).to_numpy().astype("float64"),
        }
    )


def pickup_zone_features(trips: pd.DataFrame) -> pd.DataFrame:
    return zone_features(trips, "pickup_zone")


def dropoff_zone_features(trips: pd.DataFrame) -> pd.DataFrame:
    return zone_features(trips, "dropoff_zone")


def make_zone_feature_tables(n: int = 6000, seed: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pickup and dropoff zone feature tables computed from a history of ``n`` trips (another seed
    than the training trips, so that a trip's own fare is not inside its zone's average)."""
    history = make_trips(n=n, seed=seed)
    return pickup_zone_features(history), dropoff_zone_features(history)


def join_zone_features(trips: pd.DataFrame, pickup_df: pd.DataFrame, dropoff_df: pd.DataFrame) -> pd.DataFrame:
    """``trips`` with the zone features of their pickup and dropoff zones, renamed ``pickup_*`` and
    ``dropoff_*``: a left join in trip order, so a zone without a row gives NaN (the training-set
    join of Databricks feature lookups). Looked-up columns are float64."""
    joined = trips.copy()
    for prefix, column, table in (("pickup_", "pickup_zone", pickup_df), ("dropoff_", "dropoff_zone", dropoff_df)):
        renamed = table[[ZONE_KEY, *ZONE_FEATURES]].rename(columns={f: prefix + f for f in ZONE_FEATURES})
        keys = joined[[column]].rename(columns={column: ZONE_KEY})
        looked_up = keys.merge(renamed, how="left", on=ZONE_KEY, validate="many_to_one")
        for name in ZONE_FEATURES:
            joined[prefix + name] = looked_up[prefix + name].to_numpy(dtype="float64")
    return joined


def zone_feature_spec(pickup_table: str, dropoff_table: str) -> dict[str, Any]:
    """The feature spec of a zone-feature model: both tables keyed by ``zone_id``, published by
    Databricks (``online_store`` null: resolved through the workspace's online catalog)."""
    return {
        "lookups": [
            {
                "table_name": table,
                "lookup_key": [column],
                "feature_names": list(ZONE_FEATURES),
                "rename_outputs": {name: prefix + name for name in ZONE_FEATURES},
                "online_store": None,
            }
            for table, column, prefix in (
                (pickup_table, "pickup_zone", "pickup_"),
                (dropoff_table, "dropoff_zone", "dropoff_"),
            )
        ],
        "exclude_columns": ["pickup_zone", "dropoff_zone"],
    }


def publish_features(store_url: str, online_table: str, frame: pd.DataFrame, primary_keys: list[str]) -> str:
    """Write a feature table to an online store with ``shared.online_store.OnlineStore`` (create the
    table keyed by ``primary_keys`` if needed, then upsert every row; NaN is stored as NULL).
    Returns the table's physical name in the store."""
    from shared.online_store import Column, OnlineStore, physical_name

    physical = physical_name(online_table)
    columns = [Column(str(name), _column_type(frame[name])) for name in frame.columns]
    rows = [
        tuple(None if _missing(v) else (v.item() if hasattr(v, "item") else v) for v in row)
        for row in frame.itertuples(index=False, name=None)
    ]
    with OnlineStore(store_url) as store:
        store.ensure_table(physical, columns, primary_keys)
        store.upsert(physical, [c.name for c in columns], rows, primary_keys)
    return physical


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "bigint"
    if pd.api.types.is_float_dtype(series):
        return "double"
    return "string"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


# -- MLflow plumbing ----------------------------------------------------------------------------
@contextlib.contextmanager
def using_mlflow_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs at ``tracking_uri``, then restore them.

    Saves and restores the module globals behind ``mlflow.set_tracking_uri`` /
    ``mlflow.set_registry_uri`` and the environment variables those functions write. These
    are process-wide: do not use it from two threads at once.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_tracking = tracking_utils._tracking_uri
    saved_registry = registry_utils._registry_uri
    try:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        registry_utils._registry_uri = saved_registry
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _quiet_known_warnings() -> Iterator[None]:
    """Silence MLflow hints that do not apply here.

    The integer-column hint (our features never have missing values) and, for the broken
    model, the missing-input-example hint (it has an explicit signature and no example on
    purpose). Its "Add type hints to the `predict` method" hint cannot be silenced this way:
    MLflow emits it under its own ``warnings.simplefilter("once")``.
    """
    with warnings.catch_warnings():
        for pattern in (
            r".*Inferred schema contains integer column",
            r".*An input example was not provided",
        ):
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        yield


class _DropLogMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


@contextlib.contextmanager
def ids_only_example_accepted() -> Iterator[None]:
    """Drop MLflow's "Failed to validate serving input example" warning for a model whose input
    example holds only request columns (the features are joined by the serving endpoint)."""
    logger = logging.getLogger("mlflow.models.model")
    drop = _DropLogMessage("Failed to validate serving input example")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts.

    For a ``sqlite:///`` store used without a server MLflow's default is ``./mlruns`` in the
    current directory; keep them next to the database file instead. For a tracking server
    the server decides (``mlflow-artifacts:/`` when it proxies artifacts).
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and tracking_uri.startswith("sqlite:///"):
        db_path = tracking_uri[len("sqlite:///") :]
        if db_path and db_path != ":memory:":
            return (Path(db_path).absolute().parent / "artifacts").as_uri()
    return None


def _experiment_id(experiment_name: str, artifact_location: str | None, tracking_uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_location or _default_artifact_location(tracking_uri)
    return client.create_experiment(experiment_name, artifact_location=location)


def _signature(features: pd.DataFrame):
    from mlflow.models import infer_signature

    return infer_signature(features, np.zeros(len(features), dtype="float64"))


# -- training and registration --------------------------------------------------------------------
def train_and_register(
    tracking_uri: str,
    model_name: str = "taxi_fare",
    seed: int = 0,
    n: int = 2000,
    *,
    experiment_name: str = "taxi_fare",
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
    serialization_format: str = "cloudpickle",
) -> str:
    """Train a fare regressor on ``make_trips(n, seed)`` and register it as a new version.

    Logs params and holdout metrics (``rmse``, ``mae``, ``r2``) to a run in
    ``experiment_name``, logs the model with ``mlflow.sklearn.log_model`` (signature inferred
    from the training frame and predictions, 5-row input example) and registers it under
    ``model_name``. ``tags`` become tags of the logged model and of the model version.
    Returns the new version, e.g. ``"1"``.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    began = time.monotonic()
    train, model, params, metrics = _fit_fare_model(make_trips(n=n, seed=seed), FEATURES, seed)
    trained = time.monotonic()

    features = train[FEATURES]
    with _quiet_known_warnings(), using_mlflow_uri(tracking_uri):
        signature = infer_signature(features, model.predict(features.head(50)))
        experiment_id = _experiment_id(experiment_name, artifact_location, tracking_uri)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-train-seed{seed}"):
            mlflow.log_params({**params, "seed": seed, "n": n, "features": ",".join(FEATURES)})
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=features.head(5),
                registered_model_name=model_name,
                serialization_format=serialization_format,
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(
                    include_cloudpickle=serialization_format == "cloudpickle",
                    include_skops=serialization_format == "skops",
                ),
                skops_trusted_types=SKOPS_TRUSTED_TYPES if serialization_format == "skops" else None,
                tags=tags,
            )
    last_timings.clear()
    last_timings.update(
        {"train_seconds": trained - began, "log_register_seconds": time.monotonic() - trained, **metrics}
    )
    return str(info.registered_model_version)


_BROKEN_MODEL_CODE = '''\
"""Taxi-fare model that loads and then fails every prediction (an injected fault)."""
import mlflow
from mlflow.pyfunc import PythonModel


class BrokenTaxiFareModel(PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError({message!r})


mlflow.models.set_model(BrokenTaxiFareModel())
'''


def register_broken_version(
    tracking_uri: str,
    model_name: str = "taxi_fare",
    *,
    experiment_name: str = "taxi_fare",
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Register a version of ``model_name`` that loads fine and raises RuntimeError at predict.

    Same input and output signature as ``train_and_register``'s model. No input example is
    logged: MLflow validates an input example by predicting with it when logging.
    Returns the new version.
    """
    import mlflow
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory(prefix="broken-taxi-") as tmp, _quiet_known_warnings():
        signature = _signature(make_trips(n=50, seed=0)[FEATURES])
        code_path = Path(tmp) / "broken_taxi_model.py"
        code_path.write_text(_BROKEN_MODEL_CODE.format(message=BROKEN_MESSAGE))
        with using_mlflow_uri(tracking_uri):
            experiment_id = _experiment_id(experiment_name, artifact_location, tracking_uri)
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-broken"):
                mlflow.set_tag("taxi.fault", "predict_raises")
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(code_path),
                    signature=signature,
                    registered_model_name=model_name,
                    pip_requirements=[],
                    tags=tags,
                )
    return str(info.registered_model_version)


def train_and_register_with_features(
    tracking_uri: str,
    model_name: str,
    pickup_table: str,
    dropoff_table: str,
    pickup_df: pd.DataFrame,
    dropoff_df: pd.DataFrame,
    seed: int = 0,
    n: int = 2000,
    *,
    experiment_name: str = "taxi_fare_features",
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Train a fare regressor on ``make_trips(n, seed)`` plus looked-up zone features and register it
    with a feature spec (``train_on_trips_with_features``). Returns the new version."""
    return train_on_trips_with_features(
        tracking_uri, model_name, make_trips(n=n, seed=seed), pickup_table, dropoff_table, pickup_df, dropoff_df,
        seed=seed, experiment_name=experiment_name, artifact_location=artifact_location,
        run_name=f"{model_name}-features-seed{seed}", tags=tags, params={"n": n},
    )


def train_on_trips_with_features(
    tracking_uri: str,
    model_name: str,
    trips: pd.DataFrame,
    pickup_table: str,
    dropoff_table: str,
    pickup_df: pd.DataFrame,
    dropoff_df: pd.DataFrame,
    *,
    seed: int = 0,
    experiment_name: str = "taxi_fare_features",
    artifact_location: str | None = None,
    run_name: str,
    tags: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """Train a fare regressor on ``trips`` (``REQUEST_COLUMNS`` and ``TARGET``, in training order: the
    last 20 % are the holdout) plus their looked-up zone features, and register it with a feature spec.

    The zone features come from ``pickup_df`` / ``dropoff_df`` (frames of ``zone_features``), joined
    locally (``join_zone_features``). The model sees ``FEATURE_MODEL_INPUTS``; the zone IDs are lookup
    keys only (``exclude_columns``). The logged model carries ``feature_spec.json``
    (``zone_feature_spec(pickup_table, dropoff_table)``) and an input example of ``REQUEST_COLUMNS``;
    ``params`` are logged beside the fit's. Returns the new version.
    """

    began = time.monotonic()
    joined = join_zone_features(trips, pickup_df, dropoff_df)
    train, model, fit_params, metrics = _fit_fare_model(joined, FEATURE_MODEL_INPUTS, seed)
    trained = time.monotonic()
    version = log_and_register_with_spec(
        tracking_uri, model_name, model, train[FEATURE_MODEL_INPUTS], train[REQUEST_COLUMNS].head(5),
        zone_feature_spec(pickup_table, dropoff_table), metrics,
        {**fit_params, "seed": seed, **(params or {}), "features": ",".join(FEATURE_MODEL_INPUTS),
         "pickup_table": pickup_table, "dropoff_table": dropoff_table},
        experiment_name=experiment_name, artifact_location=artifact_location, run_name=run_name, tags=tags,
    )
    last_timings.clear()
    last_timings.update(
        {"train_seconds": trained - began, "log_register_seconds": time.monotonic() - trained, **metrics}
    )
    return version


def _fit_fare_model(trips: pd.DataFrame, columns: list[str], seed: int) -> tuple[pd.DataFrame, Any, dict, dict]:
    """A gradient-boosted fare regressor on the first 80 % of ``trips``; metrics on the rest."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    split = int(len(trips) * 0.8)
    train, test = trips.iloc[:split], trips.iloc[split:]
    params = {"n_estimators": 120, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9}
    model = GradientBoostingRegressor(random_state=seed, **params)
    model.fit(train[columns], train[TARGET])
    predicted = model.predict(test[columns])
    metrics = {
        "rmse": float(np.sqrt(mean_squared_error(test[TARGET], predicted))),
        "mae": float(mean_absolute_error(test[TARGET], predicted)),
        "r2": float(r2_score(test[TARGET], predicted)),
    }
    return train, model, params, metrics


def log_and_register_with_spec(tracking_uri: str, model_name: str, model: Any, inputs: pd.DataFrame,
                               input_example: pd.DataFrame, spec: dict[str, Any], metrics: dict[str, float],
                               params: dict[str, Any], *, experiment_name: str, artifact_location: str | None,
                               run_name: str, tags: dict[str, str] | None) -> str:
    """Log an sklearn model whose requests carry only lookup keys (``input_example``) with its
    ``feature_spec.json``, register it, and return the new version."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    with (
        _quiet_known_warnings(),
        ids_only_example_accepted(),
        using_mlflow_uri(tracking_uri),
        tempfile.TemporaryDirectory(prefix="feature-spec-") as tmp,
    ):
        signature = infer_signature(inputs, model.predict(inputs.head(50)))
        experiment_id = _experiment_id(experiment_name, artifact_location, tracking_uri)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=input_example,
                serialization_format="cloudpickle",
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True),
                tags=tags,
            )
            return register_with_feature_spec(MlflowClient(tracking_uri, tracking_uri), info, spec, Path(tmp),
                                              model_name, tags)


def register_with_feature_spec(client: Any, info: Any, spec: dict[str, Any], tmp: Path, model_name: str,
                        tags: dict[str, str] | None) -> str:
    """Upload ``feature_spec.json`` to the root of a logged model, then register the model."""
    import mlflow

    path = tmp / FEATURE_SPEC_FILE
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    client.log_model_artifact(info.model_id, str(path))
    registered = mlflow.register_model(info.model_uri, model_name, tags=tags)
    return str(registered.version)

