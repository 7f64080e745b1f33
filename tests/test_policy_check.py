"""``reactor policy check``: each problem with its place, in text and as JSON items, and a warning
for a column the monitoring names that the tracked version's signature lacks, asked of a real
MLflow registry."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.taxi import using_mlflow_uri
from reactor.cli import main

MODEL = f"signed_fare_{uuid.uuid4().hex[:8]}"  # the session's registry is shared
POLICY = f"""models:
  - name: {MODEL}
    environments:
      prod:
        endpoint: signed-fare
        inference_table: {{catalog: c, schema: s}}
        monitoring:
          columns: [trip_distance, pickup_zon]
          checks:
            - {{metric: psi, of: trip_distnce, threshold: 0.2}}
            - {{metric: psi, of: features, threshold: 0.2}}
          decision: {{action: alert}}
"""


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_each_problem_is_a_line_with_its_place_and_a_json_item(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("endpoint: signed-fare", "endpoint: signed fare")
                   .replace("decision: {action: alert}", "decison: {action: alert}"))
    rc, out, err = cli("policy", "check", str(bad))
    assert rc == 1 and out == ""
    assert err.splitlines() == [
        "reactor: invalid policy (2 problem(s)):",
        f"{bad}:5:19: models[0].environments.prod.endpoint: 'signed fare' is not an endpoint name: 1 to 63 letters, "
        "digits, '-' or '_'",
        f"{bad}:12:11: models[0].environments.prod.monitoring.decison: unknown key 'decison'; did you mean "
        "'decision'?"]
    rc, out, _ = cli("policy", "check", str(bad), "--json")
    got = json.loads(out)
    assert rc == 1 and got["valid"] is False and got["warnings"] == []
    assert [(p["path"], p["line"], p["column"], p["severity"]) for p in got["problems"]] == [
        ("models[0].environments.prod.endpoint", 5, 19, "error"),
        ("models[0].environments.prod.monitoring.decison", 12, 11, "error")]
    assert got["problems"][1]["message"] == "unknown key 'decison'; did you mean 'decision'?"


@pytest.fixture(scope="module")
def registry(plat) -> Iterator[str]:
    """The session's real MLflow server, holding MODEL version 1, signed with inputs trip_distance and pickup_zone."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    class Zero(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0.0] * len(model_input)

    example = pd.DataFrame({"trip_distance": [1.5], "pickup_zone": ["a"]})
    with using_mlflow_uri(plat.mlflow.url), mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=Zero(), registered_model_name=MODEL,
                                pip_requirements=["mlflow"], signature=infer_signature(example, [0.0]))
    yield plat.mlflow.url


def test_a_column_the_signature_lacks_is_a_warning_with_its_place(registry, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    rc, out, err = cli("policy", "check", str(path), "--registry-uri", registry)
    assert rc == 0 and out.startswith(f"{path}: ok, 1 model(s)")
    assert err.splitlines() == [
        f"{path}:8:36: warning: models[0].environments.prod.monitoring.columns[1]: column 'pickup_zon' is not an "
        f"input of {MODEL} version 1 (its signature's inputs: trip_distance, pickup_zone); did you mean "
        "'pickup_zone'?",
        f"{path}:10:33: warning: models[0].environments.prod.monitoring.checks[0].of: column 'trip_distnce' is not "
        f"an input of {MODEL} version 1 (its signature's inputs: trip_distance, pickup_zone); did you mean "
        "'trip_distance'?"]
    rc, out, _ = cli("policy", "check", str(path), "--registry-uri", registry, "--json")
    got = json.loads(out)
    assert rc == 0 and got["valid"] is True
    assert [(w["path"], w["line"], w["column"], w["severity"]) for w in got["warnings"]] == [
        ("models[0].environments.prod.monitoring.columns[1]", 8, 36, "warning"),
        ("models[0].environments.prod.monitoring.checks[0].of", 10, 33, "warning")]
    path.write_text(POLICY.replace("pickup_zon]", "pickup_zone]").replace("trip_distnce", "trip_distance"))
    assert cli("policy", "check", str(path), "--registry-uri", registry) == (
        0, f"{path}: ok, 1 model(s), 1 environment(s): {MODEL}/prod\n", "")


def test_a_model_the_registry_lacks_is_a_warning_not_a_failure(registry, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.replace(f"name: {MODEL}", "name: unregistered"))
    rc, _, err = cli("policy", "check", str(path), "--registry-uri", registry)
    assert rc == 0 and err.startswith(f"{path}:5:9: warning: models[0].environments.prod: cannot read the signature "
                                      "of unregistered")


def test_the_shipped_policy_is_checked_without_asking_a_registry_unless_one_is_named():
    path = Path(__file__).parent.parent / "policy.yaml"
    assert cli("policy", "check", str(path))[2] == ""
