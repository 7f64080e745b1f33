"""local.taxi: synthetic trips, a real model registered in a real (SQLite) MLflow registry."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from local.taxi import (
    BROKEN_MESSAGE,
    FEATURES,
    N_ZONES,
    REQUEST_COLUMNS,
    TARGET,
    make_trips,
    register_broken_version,
    sample_records,
    train_and_register,
    trip_stream,
    using_mlflow_uri,
)


def test_make_trips_is_deterministic_for_a_seed():
    a = make_trips(n=500, seed=7)
    b = make_trips(n=500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(make_trips(n=500, seed=8))
    assert list(a.columns) == [*FEATURES, TARGET]
    assert len(a) == 500
    assert a["trip_distance"].dtype == np.float64
    for column in ("passenger_count", "pickup_hour", "pickup_zone", "dropoff_zone"):
        assert a[column].dtype == np.int64, column
    assert a["pickup_hour"].between(0, 23).all()
    assert a["passenger_count"].between(1, 6).all()


def test_trip_stream_never_repeats_a_trip_and_is_deterministic_for_a_seed():
    trips = list(itertools.islice(trip_stream((3, 0), drifted=True), 1600))  # past three chunks of 500
    # Not the same chunk again (as callers cycling one frame would send), and no more equal trips
    # than independent draws give (the odd coincidence: distances are clipped at 0.3 km).
    assert all(trips[i] != trips[i + 500] for i in range(len(trips) - 500))
    assert len({tuple(sorted(t.items())) for t in trips}) >= len(trips) - 5
    assert trips == list(itertools.islice(trip_stream((3, 0), drifted=True), 1600))
    assert trips[:10] != list(itertools.islice(trip_stream((3, 1), drifted=True), 10))
    assert set(trips[0]) == set(REQUEST_COLUMNS)
    assert {t["pickup_zone"] for t in trips} == set(range(N_ZONES - 4, N_ZONES + 1))  # the drifted city


def test_fares_are_positive_and_grow_with_distance_on_average():
    trips = make_trips(n=2000, seed=0)
    assert (trips[TARGET] > 0).all()
    assert (trips["trip_distance"] > 0).all()
    quartile = pd.qcut(trips["trip_distance"], 4, labels=False)
    mean_fare = trips.groupby(quartile)[TARGET].mean().to_numpy()
    assert np.all(np.diff(mean_fare) > 0), mean_fare
    slope = np.polyfit(trips["trip_distance"], trips[TARGET], 1)[0]
    assert 1.5 < slope < 2.5, slope  # 1.75 per km plus the rush-hour share


def test_sample_records_are_plain_json_feature_records():
    records = sample_records(n=4, seed=2)
    assert records == sample_records(n=4, seed=2)
    assert len(records) == 4
    assert json.loads(json.dumps(records)) == records
    for record in records:
        assert list(record) == FEATURES
        assert isinstance(record["trip_distance"], float)
        assert all(type(record[name]) is int for name in FEATURES[1:])


@pytest.fixture()
def registry_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_train_register_load_predict_and_broken_version(registry_uri: str, tmp_path: Path):
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))

    assert train_and_register(registry_uri, model_name="taxi_fare", seed=0, n=2000) == "1"
    assert train_and_register(registry_uri, model_name="taxi_fare", seed=1, n=1000) == "2"
    broken = register_broken_version(registry_uri, model_name="taxi_fare")
    assert broken == "3"

    # The caller's MLflow configuration is untouched and no run is left open.
    after = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))
    assert after == before
    assert mlflow.active_run() is None

    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    # The SQL store answers versions as int, the REST store as str.
    versions = {str(v.version): v for v in client.search_model_versions("name='taxi_fare'")}
    assert sorted(versions) == ["1", "2", "3"]
    assert {v.status for v in versions.values()} == {"READY"}
    experiment = client.get_experiment_by_name("taxi_fare")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    trained = client.get_run(versions["1"].run_id)
    assert trained.data.metrics["rmse"] < 3.0
    assert trained.data.metrics["r2"] > 0.8
    # Artifacts sit next to the database, not in ./mlruns of the working directory.
    assert experiment.artifact_location == (tmp_path / "artifacts").as_uri()

    records = sample_records(n=3, seed=1)
    frame = pd.DataFrame(records)
    with using_mlflow_uri(registry_uri):
        model = mlflow.pyfunc.load_model("models:/taxi_fare/1")
        broken_model = mlflow.pyfunc.load_model(f"models:/taxi_fare/{broken}")
    inputs = [spec.name for spec in model.metadata.get_input_schema().inputs]
    assert inputs == FEATURES
    assert broken_model.metadata.get_input_schema() == model.metadata.get_input_schema()

    predictions = np.asarray(model.predict(frame))
    assert predictions.shape == (len(records),)
    assert np.all(predictions > 0)
    with pytest.raises(RuntimeError, match="predict always fails"):
        broken_model.predict(frame)


def test_models_load_in_another_process_without_this_repository(registry_uri: str, tmp_path: Path):
    good = train_and_register(registry_uri, n=600)
    broken = register_broken_version(registry_uri)
    script = textwrap.dedent(
        """
        import json, sys
        import mlflow, pandas as pd
        try:
            import local.taxi
            sys.exit("local.taxi must not be importable here")
        except ImportError:
            pass
        uri, good, broken, records = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        mlflow.set_tracking_uri(uri)
        frame = pd.DataFrame(records)
        predictions = mlflow.pyfunc.load_model(f"models:/taxi_fare/{good}").predict(frame)
        try:
            mlflow.pyfunc.load_model(f"models:/taxi_fare/{broken}").predict(frame)
            error = None
        except RuntimeError as exc:
            error = str(exc)
        print(json.dumps({"predictions": [float(p) for p in predictions], "error": error}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    records = sample_records(n=5, seed=3)
    done = subprocess.run(
        [sys.executable, "-c", script, registry_uri, good, broken, json.dumps(records)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["predictions"]) == len(records)
    assert all(p > 0 for p in result["predictions"])
    assert result["error"] == BROKEN_MESSAGE
