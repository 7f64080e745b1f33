"""``reactor doctor`` (reactor/doctor.py) against the real stack: the session's MLflow server and
local workspace, a registered model, an endpoint capturing to its inference table, a feature table
with its key and change data feed, an online store, a retraining job and SQLite storage. With all
of them in place every check passes; with each prerequisite taken away in turn (the policy or the
settings pointing elsewhere, or a permission revoked in the workspace) exactly that one check is
named, with the exit code the docstring promises. Bad input (an unreachable host, a wrong token,
an invalid policy) is one line on stderr and a documented exit code."""

from __future__ import annotations

import copy
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.stack import WORKSPACE_TOKEN
from reactor.cli import main


@dataclass
class World:
    tag: str
    policy: dict[str, Any]
    env: dict[str, str]
    endpoint_id: str
    plat: Any
    tmp: Path


@pytest.fixture(scope="module")
def world(plat, tmp_path_factory) -> World:
    from databricks.sdk.service import jobs, ml, serving

    from local import taxi
    from shared.workspace import _workspace_client

    tmp = tmp_path_factory.mktemp("doctor")
    tag = uuid.uuid4().hex[:8]
    w = _workspace_client(plat.workspace.url, WORKSPACE_TOKEN, 20.0)
    model, endpoint, schema = f"doc_{tag}", f"doc-{tag}", f"main.doc{tag}"
    version = taxi.train_and_register(plat.mlflow.url, model_name=model, seed=0, n=300)
    pickup, _ = taxi.make_zone_feature_tables(n=300, seed=5)
    plat.workspace.catalog.create_table(f"{schema}.zones", pickup, primary_keys=["zone_id"], change_data_feed=True)
    plat.workspace.catalog.create_table(f"{schema}.nocdf", pickup, primary_keys=["zone_id"])
    w.feature_store.create_online_store(ml.OnlineStore(name=f"doc-{tag}", capacity="CU_1"))
    script = tmp / "train.py"
    script.write_text("import sys\nsys.exit(0)\n")
    job_id = int(w.jobs.create(name="retrain", tasks=[jobs.Task(
        task_key="t", spark_python_task=jobs.SparkPythonTask(python_file=str(script)))]).job_id)
    entity = serving.ServedEntityInput(entity_name=model, entity_version=version, workload_size="Small",
                                       scale_to_zero_enabled=True)
    ep = w.serving_endpoints.create(
        name=endpoint, config=serving.EndpointCoreConfigInput(name=endpoint, served_entities=[entity]),
        ai_gateway=serving.AiGatewayConfig(inference_table_config=serving.AiGatewayInferenceTableConfig(
            catalog_name="main", schema_name=f"doc{tag}", table_name_prefix=tag, enabled=True))).response
    plat.workspace.inference.flush()  # the inference table is created at the next delivery
    deadline = time.monotonic() + 30
    while w.feature_store.get_online_store(f"doc-{tag}").state != ml.OnlineStoreState.AVAILABLE:
        assert time.monotonic() < deadline, "the online store did not become AVAILABLE"
        time.sleep(0.1)
    policy = {"version": 1, "models": [{
        "name": model,
        "features": {"store": {"kind": "online_feature_store", "name": f"doc-{tag}"}, "publish_mode": "triggered",
                     "tables": [{"source": f"{schema}.zones", "primary_keys": ["zone_id"]}]},
        "environments": {"prod": {
            "endpoint": endpoint, "track": "latest", "aliases": ["Champion"],
            "strategy": {"kind": "direct", "bake": "0s"},
            "inference_table": {"catalog": "main", "schema": f"doc{tag}", "prefix": tag},
            "retraining": {"job_id": job_id}}}}]}
    env = {"DATABRICKS_HOST": plat.workspace.url, "DATABRICKS_TOKEN": WORKSPACE_TOKEN,
           "DATABRICKS_WAREHOUSE_ID": "local-warehouse", "MLFLOW_TRACKING_URI": plat.mlflow.url,
           "REACTOR_STORAGE": f"sqlite:///{tmp / 'state.db'}", "DATABRICKS_RETRY_TIMEOUT_SECONDS": "5"}
    return World(tag, policy, env, ep.id, plat, tmp)


@pytest.fixture
def doctor(world, monkeypatch, tmp_path) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """Runs ``reactor doctor`` with the world's policy and settings, changed as asked."""
    for name in ("MLFLOW_REGISTRY_URI", "REACTOR_POLICY_FILE", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)

    def run(policy: dict[str, Any] | str | None = None, json_out: bool = False, args: tuple[str, ...] = (),
            **env: str) -> tuple[int, str, str]:
        for k, v in {**world.env, **env}.items():
            monkeypatch.setenv(k, v)
        path = tmp_path / "policy.yaml"
        path.write_text(policy if isinstance(policy, str) else json.dumps(policy or world.policy))
        out, err = io.StringIO(), io.StringIO()
        rc = main(["doctor", "--policy", str(path), *(["--json"] if json_out else []), *args], out, err)
        return rc, out.getvalue(), err.getvalue()

    yield run
    world.plat.workspace.access.restore()


def _env(policy: dict[str, Any]) -> dict[str, Any]:
    return policy["models"][0]["environments"]["prod"]


def _changed(change: Callable[[dict[str, Any], World], None]) -> Callable[[World], dict[str, Any]]:
    def make(world: World) -> dict[str, Any]:
        policy = copy.deepcopy(world.policy)
        change(policy, world)
        return policy
    return make


def _table(name: str) -> Callable[[dict[str, Any], World], None]:
    def change(policy: dict[str, Any], world: World) -> None:
        policy["models"][0]["features"]["tables"][0]["source"] = f"main.doc{world.tag}.{name}"
    return change


def _monitoring(world: World, labels: str) -> dict[str, Any]:
    """Monitoring that reads labels from ``labels`` and its predictions from the nocdf table."""
    schema = f"main.doc{world.tag}"
    return {"window": "1h", "labels": {"table": f"{schema}.{labels}", "key": "zone_id", "column": "zone_id"},
            "source": {"table": f"{schema}.nocdf", "timestamp_column": "t", "version_column": "v",
                       "prediction_column": "p"},
            "checks": [{"metric": "rmse", "threshold": 8.0}],
            "decision": {"windows": 3, "violations": 2, "action": "alert"}}


def test_against_the_local_stack_every_check_passes(doctor, world):
    rc, out, err = doctor(json_out=True)
    assert rc == 0, (out, err)
    checks = json.loads(out)["checks"]
    assert [c for c in checks if c["status"] != "ok"] == []
    names = " | ".join(c["name"] for c in checks)
    for part in ("identity", "registry", f"model doc_{world.tag}", f"endpoint doc-{world.tag}", "inference table",
                 "retraining job", "feature table", "online store", "SQL warehouse", "storage"):
        assert part in names


# (what is taken away, how, the check named, its status, the exit code)
CASES = {
    "model missing": (_changed(lambda p, w: p["models"][0].update(name=f"nomodel_{w.tag}")), {}, None,
                      "model nomodel_", "fail", 1),
    "endpoint missing": (_changed(lambda p, w: _env(p).update(endpoint=f"none-{w.tag}")), {}, None,
                         "endpoint none-", "warn", 0),
    "warehouse missing": (None, {"DATABRICKS_WAREHOUSE_ID": "0123456789abcdef"}, None,
                          "SQL warehouse 0123456789abcdef", "fail", 1),
    "inference table missing": (_changed(lambda p, w: _env(p)["inference_table"].update(prefix="none")), {}, None,
                                "inference table main.doc", "warn", 0),
    "feature table missing": (_changed(_table("absent")), {}, None, "feature table main.doc", "fail", 1),
    "change data feed off": (_changed(_table("nocdf")), {}, None, "feature table main.doc", "warn", 0),
    "job missing": (_changed(lambda p, w: _env(p)["retraining"].update(job_id=987654321)), {}, None,
                    "retraining job 987654321", "fail", 1),
    "endpoint privilege missing": (None, {}, lambda w: w.plat.workspace.access.revoke_level(
        "serving-endpoints", w.endpoint_id), "endpoint doc-", "fail", 1),
    "table privilege missing": (None, {}, lambda w: w.plat.workspace.access.revoke_privilege(
        "table", f"main.doc{w.tag}.zones", "SELECT"), "feature table main.doc", "fail", 1),
    "job privilege missing": (None, {}, lambda w: w.plat.workspace.access.revoke_level(
        "jobs", str(w.policy["models"][0]["environments"]["prod"]["retraining"]["job_id"])),
        "retraining job", "fail", 1),
    "label table missing": (_changed(lambda p, w: _env(p).update(monitoring=_monitoring(w, "nolabels"))), {}, None,
                            "label table main.doc", "fail", 1),
    "monitored table privilege missing": (
        _changed(lambda p, w: _env(p).update(monitoring=_monitoring(w, "zones"))), {},
        lambda w: w.plat.workspace.access.revoke_privilege("table", f"main.doc{w.tag}.nocdf", "SELECT"),
        "monitored table main.doc", "fail", 1),
    "storage unreachable": (None, {"REACTOR_STORAGE": "sqlite:////proc/version/state.db"}, None,
                            "storage", "fail", 1),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_prerequisite_taken_away_is_named_alone(doctor, world, case):
    make_policy, env, revoke, named, status, code = CASES[case]
    if revoke:
        revoke(world)
    rc, out, err = doctor(make_policy(world) if make_policy else None, json_out=True, **env)
    checks = json.loads(out)["checks"]
    wrong = [c for c in checks if c["status"] != "ok"]
    assert len(wrong) == 1, (case, wrong)
    assert wrong[0]["name"].startswith(named) and wrong[0]["status"] == status, wrong
    assert rc == code, (rc, err)
    if status == "fail":
        assert wrong[0]["fix"]


def test_text_output_is_one_line_per_check_with_what_to_do(doctor, world):
    rc, out, _ = doctor(_changed(lambda p, w: _env(p)["retraining"].update(job_id=987654321))(world))
    lines = out.strip().splitlines()
    assert rc == 1
    bad = [ln for ln in lines if not ln.startswith("ok ")]
    assert len(bad) == 1 and bad[0].startswith("fail  retraining job 987654321") and " -> " in bad[0]


@pytest.mark.parametrize("env,policy,code,says", [
    ({"DATABRICKS_TOKEN": "wrong-token"}, None, 4, "refused the identity"),
    ({"DATABRICKS_HOST": "http://127.0.0.1:9"}, None, 4, "cannot reach http://127.0.0.1:9"),
    ({}, "models: [{name: x, environments: {}}", 1, "invalid policy"),
], ids=["wrong identity", "unreachable host", "policy does not parse"])
def test_bad_input_is_one_clear_line_and_its_exit_code(doctor, env, policy, code, says):
    rc, out, err = doctor(policy, **env)
    assert rc == code
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
    assert "wrong-token" not in err


def test_another_principal_is_checked_by_what_the_workspace_grants_it(doctor):
    rc, out, _ = doctor(json_out=True, args=("--principal", "app-client-id"))
    checks = json.loads(out)["checks"]
    failed = [c for c in checks if c["status"] == "fail"]
    assert rc == 1
    assert {"endpoint", "retraining", "feature", "inference", "SQL"} <= {c["name"].split(" ")[0] for c in failed}
    assert all("app-client-id" in c["detail"] for c in failed)
    assert "privileges checked for app-client-id" in checks[0]["detail"]


def test_the_access_routes_answer_in_the_sdk_types(world):
    """Each response parses with the SDK's dataclass and ``as_dict`` gives it back whole."""
    import requests
    from databricks.sdk.service import catalog, iam, jobs, serving, sql

    base, auth = world.plat.workspace.url, {"Authorization": f"Bearer {WORKSPACE_TOKEN}"}
    job_id = world.policy["models"][0]["environments"]["prod"]["retraining"]["job_id"]
    for path, kind in [
        ("/api/2.0/preview/scim/v2/Me", iam.User),
        ("/api/2.0/sql/warehouses/local-warehouse", sql.GetWarehouseResponse),
        (f"/api/2.0/permissions/serving-endpoints/{world.endpoint_id}", serving.ServingEndpointPermissions),
        (f"/api/2.0/permissions/jobs/{job_id}", jobs.JobPermissions),
        ("/api/2.0/permissions/warehouses/local-warehouse", sql.WarehousePermissions),
        (f"/api/2.1/unity-catalog/effective-permissions/table/main.doc{world.tag}.zones",
         catalog.EffectivePermissionsList),
        (f"/api/2.1/unity-catalog/effective-permissions/function/doc_{world.tag}", catalog.EffectivePermissionsList),
    ]:
        r = requests.get(base + path, headers=auth, timeout=10)
        assert r.status_code == 200, (path, r.text)
        assert kind.from_dict(r.json()).as_dict() == r.json(), path
    for path in (f"/api/2.0/permissions/serving-endpoints/{world.tag}", "/api/2.0/permissions/jobs/987654321",
                 "/api/2.0/sql/warehouses/nope",
                 f"/api/2.1/unity-catalog/effective-permissions/table/main.x{world.tag}.y"):
        r = requests.get(base + path, headers=auth, timeout=10)
        assert r.status_code == 404 and r.json()["error_code"] in ("RESOURCE_DOES_NOT_EXIST", "TABLE_DOES_NOT_EXIST")


def test_a_unity_catalog_model_is_checked_by_its_effective_permissions(doctor, world):
    """With ``databricks-uc`` the model is read through Unity Catalog and EXECUTE is asked of the
    effective permissions (its owner moves the aliases); without EXECUTE that one line fails."""
    from local import taxi

    name = f"main.doc{world.tag}.fare"
    taxi.train_and_register(world.plat.mlflow.url, model_name=name, seed=1, n=300)
    policy = copy.deepcopy(world.policy)
    policy["models"][0]["name"] = name
    rc, out, err = doctor(policy, json_out=True, MLFLOW_REGISTRY_URI="databricks-uc")
    checks = json.loads(out)["checks"]
    assert rc == 0, (out, err)
    assert checks[1]["detail"].startswith("Unity Catalog") and "aliases Champion" in checks[1]["detail"]
    world.plat.workspace.access.revoke_privilege("function", name, "EXECUTE")
    rc, out, _ = doctor(policy, json_out=True, MLFLOW_REGISTRY_URI="databricks-uc")
    wrong = [c for c in json.loads(out)["checks"] if c["status"] != "ok"]
    assert rc == 1 and [c["name"] for c in wrong] == [f"model {name}"]
    assert wrong[0]["fix"] == f"GRANT EXECUTE ON FUNCTION {name} TO `local-user@localhost`"


def test_a_read_the_workspace_refuses_is_one_failed_line_not_a_traceback():
    from databricks.sdk.errors import PermissionDenied

    from reactor.doctor import FAIL, OK, Check, _guarded

    def checks():
        yield Check("endpoint e (m/prod)", OK, "exists")
        raise PermissionDenied("User app-client-id cannot read the permissions of serving-endpoint e")

    got = list(_guarded("m/prod", checks()))
    assert [c.status for c in got] == [OK, FAIL]
    assert got[1].name == "m/prod" and "PermissionDenied" in got[1].detail and "workspace admin" in got[1].fix


def test_no_policy_file_and_no_host_are_one_line_each(tmp_path, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    assert main(["doctor", "--policy", str(tmp_path / "absent.yaml")], out, err) == 3
    assert err.getvalue().count("\n") == 1 and "no such policy file" in err.getvalue()
    (tmp_path / "p.yaml").write_text(json.dumps({"version": 1, "models": []}))
    monkeypatch.delenv("DATABRICKS_HOST", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["doctor", "--policy", str(tmp_path / "p.yaml")], out, err) == 4
    assert err.getvalue().count("\n") == 1 and "DATABRICKS_HOST is not set" in err.getvalue() and out.getvalue() == ""
