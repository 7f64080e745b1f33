"""Retraining job of the taxi-fare model: labelled recent requests in, a new registered version out.

Run as a job's ``spark_python_task`` (``job_settings`` builds that job): every parameter is a job
parameter, passed as ``--<name> {{job.parameters.<name>}}`` since Databricks does not push job
parameters down to Python script tasks (``local/workspace/job_process.py``):

- ``model``: the registered model to retrain; ``decision``: the app's decision id, stored on the new
  version as the tag ``reactor.decision`` so the app links the version to the decision that caused it;
- ``payload_table``: the endpoint's AI Gateway payload table, ``since``: ISO-8601
  UTC, only requests at or after it (``request_time``), only ``status_code`` 200;
- ``label_table``, ``label_key`` (matched against the payload's ``client_request_id``),
  ``label_column`` (the fare); ``label_position_column`` (optional): the label table's column with the
  record's 0-based position in its request. Without it a label belongs to a request, so only requests
  holding exactly one record are labelled (a request of several records could not say which record
  the label is for);
- ``warehouse_id``: the SQL warehouse the Statement Execution API runs the queries on;
- ``min_rows``: fewer labelled records than this and the job fails (exit code 1, the reason on
  stderr, which the run shows as its ``state_message``) without training.

What it does: one SQL statement explodes each request's ``dataframe_records`` into one row per record
(the records relation of the monitoring spec: ``LATERAL explode(sequence(0, n - 1))`` and
``get_json_object`` paths) and joins the labels; the zone feature tables are the lookups of the
newest version of ``model`` that has a feature spec (its ``feature_spec.json``), read through the same
API. Training is ``local.taxi.train_on_trips_with_features`` (the feature-lookup model of
``train_and_register_with_features``: the same fit, the same feature spec), on the records in request
order, so the holdout is the most recent 20 %. The new version carries the tags ``reactor.decision``,
``reactor.trained_on`` ("<n> labelled rows since <since>") and, given ``job_run_id``,
``reactor.job_run_id``. MLflow's tracking and registry URI come from the environment the job run has
(``MLFLOW_TRACKING_URI``); the workspace from ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN``.

A job waits on its statements; the app never does (``shared/statements.py``, principle 3): the
polling loop here is the job's own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
PARAMETERS = {
    "model": "registered model to retrain",
    "payload_table": "AI Gateway payload table of the endpoint (catalog.schema.table)",
    "label_table": "table of ground-truth labels (catalog.schema.table)",
    "label_key": "column of the label table matched against client_request_id",
    "label_column": "column of the label table holding the label (the fare)",
    "label_position_column": "column of the label table with the record's position in its request (optional)",
    "since": "ISO-8601 UTC time; only requests at or after it",
    "decision": "the app's decision id, tagged on the new version as reactor.decision",
    "warehouse_id": "SQL warehouse of the statements",
    "min_rows": "fewer labelled rows than this fails the job",
    "job_run_id": "the job run, tagged as reactor.job_run_id (optional)",
}
OPTIONAL = {"label_position_column": "", "job_run_id": ""}
# Not a job parameter: the run itself (a dynamic value reference).
RUN_REFERENCES = {"job_run_id": "{{job.run_id}}"}
EXPERIMENT = "taxi_fare_retraining"
STATEMENT_TIMEOUT_SECONDS = 600.0


def job_settings(name: str, defaults: dict[str, str], *, max_concurrent_runs: int = 1,
                 queue: bool = False) -> dict[str, Any]:
    """Keyword arguments of ``w.jobs.create`` for a job running this file, with job parameter
    ``defaults`` (the optional ones may be left out)."""
    from databricks.sdk.service.jobs import JobParameterDefinition, QueueSettings, SparkPythonTask, Task

    values = {**{k: v for k, v in OPTIONAL.items() if k not in RUN_REFERENCES}, **defaults}
    missing = sorted(set(PARAMETERS) - set(values) - set(RUN_REFERENCES))
    if missing:
        raise ValueError(f"job parameters without a default: {missing}")
    arguments = [part for p in PARAMETERS
                 for part in (f"--{p}", RUN_REFERENCES.get(p, f"{{{{job.parameters.{p}}}}}"))]
    return {
        "name": name,
        "max_concurrent_runs": max_concurrent_runs,
        "queue": QueueSettings(enabled=queue),
        "parameters": [JobParameterDefinition(name=k, default=str(v)) for k, v in values.items()],
        "tasks": [Task(task_key="retrain", spark_python_task=SparkPythonTask(python_file=str(SCRIPT),
                                                                              parameters=arguments))],
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in PARAMETERS.items():
        parser.add_argument(f"--{name}", required=name not in OPTIONAL, default=OPTIONAL.get(name), help=text)
    args = parser.parse_args(argv)
    try:
        args.min_rows = int(args.min_rows)
    except ValueError:
        parser.error(f"--min_rows must be an integer, got {args.min_rows!r}")
    try:
        args.since_at = utc(args.since)
    except ValueError as exc:
        parser.error(f"--since must be an ISO-8601 time: {exc}")
    return args


def utc(text: str) -> datetime:
    """An ISO-8601 time as naive UTC; a time without an offset is UTC already."""
    at = datetime.fromisoformat(text)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def records_sql(args: argparse.Namespace) -> str:
    """The labelled records of the payload table since ``args.since_at``, oldest first."""
    from local.taxi import REQUEST_COLUMNS
    from shared.statements import literal, quote, quote_ident

    def field(column: str) -> str:
        value = f"get_json_object(p.request, concat('$.dataframe_records[', r.pos, '].{column}'))"
        return f"CAST({value} AS DOUBLE) AS {quote_ident(column)}"  # every request column is numeric

    since = literal(args.since_at.strftime("%Y-%m-%d %H:%M:%S.%f"))
    key, label = quote_ident(args.label_key), quote_ident(args.label_column)
    if args.label_position_column:
        match = f"AND CAST(l.{quote_ident(args.label_position_column)} AS BIGINT) = rec.__pos"
    else:
        match = "AND rec.__records = 1"
    columns = ",\n         ".join(field(c) for c in REQUEST_COLUMNS)
    picked = ", ".join(f"rec.{quote_ident(c)}" for c in REQUEST_COLUMNS)
    return f"""WITH p AS (
  SELECT client_request_id, request_time, request,
         json_array_length(get_json_object(request, '$.dataframe_records')) AS n_records
  FROM {quote(args.payload_table)}
  WHERE status_code = 200 AND request_time >= TIMESTAMP {since}
),
records AS (
  SELECT p.client_request_id AS __request_id, r.pos AS __pos, p.request_time AS __ts, p.n_records AS __records,
         {columns}
  FROM p, LATERAL explode(sequence(0, p.n_records - 1)) AS r(pos)
  WHERE p.n_records > 0
)
SELECT rec.__request_id, rec.__pos, {picked}, CAST(l.{label} AS DOUBLE) AS __label
FROM records AS rec
JOIN {quote(args.label_table)} AS l ON CAST(l.{key} AS STRING) = rec.__request_id {match}
WHERE l.{label} IS NOT NULL
ORDER BY rec.__ts, rec.__request_id, rec.__pos"""


def query(w: Any, warehouse_id: str, statement: str) -> list[dict[str, Any]]:
    """Every row of ``statement`` as dicts, waiting for it to finish."""
    from shared import statements

    cursor: dict[str, Any] = {}
    deadline = time.monotonic() + STATEMENT_TIMEOUT_SECONDS
    while True:
        try:
            result = statements.run(w, warehouse_id, statement, cursor, "retrain", deadline)
        except statements.StatementPending:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
            continue
        names = [name for name, _ in result.columns]
        return [dict(zip(names, row, strict=True)) for row in statements.rows(w, result)]


def zone_tables(model: str, tracking_uri: str) -> tuple[str, str]:
    """The pickup and dropoff feature tables of the newest version of ``model`` with a feature spec."""
    import mlflow.artifacts
    from mlflow import MlflowClient

    from local.workspace.feature_lookup import SPEC_FILE, FeatureSpec

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = sorted(client.search_model_versions(f"name='{model}'"), key=lambda v: -int(v.version))
    for version in versions:
        with tempfile.TemporaryDirectory(prefix="retrain-spec-") as tmp:
            uri = client.get_model_version_download_uri(model, version.version)
            try:
                local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{SPEC_FILE}",
                                                            dst_path=tmp, tracking_uri=tracking_uri)
            except Exception:  # this version has no feature spec: look at an older one
                continue
            spec = FeatureSpec.load(Path(local).parent)
        tables = {lk.lookup_key: lk.table_name for lk in spec.lookups} if spec else {}
        if ("pickup_zone",) in tables and ("dropoff_zone",) in tables:
            return tables[("pickup_zone",)], tables[("dropoff_zone",)]
    raise SystemExit(f"retrain_taxi: no version of {model} has a feature spec with pickup and dropoff zone lookups")


def zone_frame(w: Any, warehouse_id: str, table: str) -> Any:
    import pandas as pd

    from local.taxi import ZONE_FEATURES, ZONE_KEY
    from shared.statements import quote, quote_ident

    columns = ", ".join(quote_ident(c) for c in (ZONE_KEY, *ZONE_FEATURES))
    frame = pd.DataFrame(query(w, warehouse_id, f"SELECT {columns} FROM {quote(table)}"),
                         columns=[ZONE_KEY, *ZONE_FEATURES])
    return frame.astype({ZONE_KEY: "int64"})


def trips(rows: list[dict[str, Any]]) -> Any:
    """Labelled records as the training frame of ``local.taxi`` (rows with a missing field dropped)."""
    import pandas as pd

    from local.taxi import REQUEST_COLUMNS, TARGET

    frame = pd.DataFrame(rows, columns=["__request_id", "__pos", *REQUEST_COLUMNS, "__label"])
    frame = frame.rename(columns={"__label": TARGET}).dropna(subset=[*REQUEST_COLUMNS, TARGET])
    ints = {c: "int64" for c in REQUEST_COLUMNS if c != "trip_distance"}
    return frame[[*REQUEST_COLUMNS, TARGET]].astype({**ints, "trip_distance": "float64", TARGET: "float64"}) \
        .reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    from databricks.sdk import WorkspaceClient

    from local.taxi import train_on_trips_with_features

    args = parse(argv)
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    w = WorkspaceClient()
    frame = trips(query(w, args.warehouse_id, records_sql(args)))
    if len(frame) < args.min_rows:
        raise SystemExit(f"retrain_taxi: {len(frame)} labelled rows in {args.payload_table} since {args.since} "
                         f"(labels from {args.label_table}); min_rows is {args.min_rows}: not training.")
    pickup_table, dropoff_table = zone_tables(args.model, tracking_uri)
    pickup_df, dropoff_df = (zone_frame(w, args.warehouse_id, t) for t in (pickup_table, dropoff_table))
    trained_on = f"{len(frame)} labelled rows since {args.since}"
    tags = {"reactor.decision": args.decision, "reactor.trained_on": trained_on}
    if args.job_run_id:
        tags["reactor.job_run_id"] = args.job_run_id
    version = train_on_trips_with_features(
        tracking_uri, args.model, frame, pickup_table, dropoff_table, pickup_df, dropoff_df,
        experiment_name=EXPERIMENT, run_name=f"{args.model}-retrain-{args.decision}", tags=tags,
        params={"rows": len(frame), "since": args.since, "payload_table": args.payload_table,
                "label_table": args.label_table})
    print(f"retrain_taxi: registered {args.model} version {version} ({trained_on}; decision {args.decision})")
    return 0


if __name__ == "__main__":
    # Run as a file, as a job runs it: only this file's folder is on sys.path, not the repository.
    sys.path.insert(0, str(SCRIPT.parents[2]))
    sys.exit(main())
