"""One identity for every Databricks call: with no token anywhere in the environment, the app
authenticates with azure-identity's real ``ManagedIdentityCredential`` against the App Service
identity stand-in (``local.identity``), and the local workspace in identity mode accepts only
the tokens that stand-in issued. A full rollout with online features (Unity Catalog registry
``databricks-uc`` served by the workspace, so the registry goes through the identity too) runs
that way; no token value reaches a log or a stored record. The workspace registry
(``databricks``, MLflow's REST store) and ``python -m local.workspace`` in identity mode too.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local import taxi
from local.identity import ManagedIdentityEndpoint
from local.stack import WORKSPACE_TOKEN, Platform, app_settings, function_host, platform
from shared import journal, rollouts
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.storage import open_queues, open_tables
from shared.workspace import DATABRICKS_SCOPE
from tests.conftest import NEVER, App, policy_yaml

USER_ASSIGNED = "7d1b2c3e-0000-4000-8000-00000000beef"
# Variables any of the clients would take a token or a secret from.
TOKEN_VARIABLES = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CLIENT_ID", "DATABRICKS_CONFIG_PROFILE",
                   "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                   "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "ARM_CLIENT_SECRET", "MSI_ENDPOINT",
                   "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_CLIENT_ID")


class Clock:
    """Real time plus an offset a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def idp(clock: Clock) -> Iterator[ManagedIdentityEndpoint]:
    with ManagedIdentityEndpoint(client_ids=[USER_ASSIGNED], clock=clock) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def iplat(idp: ManagedIdentityEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """An MLflow server and a local workspace in identity mode (it has a PAT, which it must refuse)."""
    with platform(tmp_path_factory.mktemp("identity"), identity=idp) as p:
        yield p


@pytest.fixture
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKEN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not [n for n in os.environ if n.endswith("_TOKEN") and n.startswith(("DATABRICKS", "MLFLOW"))]


def credential(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **kw):
    from azure.identity import ManagedIdentityCredential

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return ManagedIdentityCredential(**kw)


def test_managed_identity_credential_gets_tokens_the_workspace_accepts(no_tokens, idp, iplat, monkeypatch):
    before = idp.issued
    system = credential(monkeypatch, idp.env()).get_token(DATABRICKS_SCOPE)
    user = credential(monkeypatch, idp.env(), client_id=USER_ASSIGNED).get_token(DATABRICKS_SCOPE)
    assert idp.issued == before + 2 and system.token != user.token
    assert system.expires_on > 0
    resource = DATABRICKS_SCOPE.removesuffix("/.default")
    assert idp.verify(user.token, resource) and not idp.verify(user.token, "https://management.azure.com/")
    url = f"{iplat.workspace.url}/api/2.0/serving-endpoints"
    assert requests.get(url, headers={"Authorization": f"Bearer {user.token}"}, timeout=10).status_code == 200

    from azure.core.exceptions import ClientAuthenticationError

    with pytest.raises(ClientAuthenticationError, match="No Managed Identity found"):
        credential(monkeypatch, idp.env(), client_id="not-assigned-to-this-app").get_token(DATABRICKS_SCOPE)
    assert idp.issued == before + 2


def test_a_wrong_identity_header_is_refused(no_tokens, idp, monkeypatch):
    before, refused = idp.issued, idp.refused
    query = {"api-version": "2019-08-01", "resource": DATABRICKS_SCOPE.removesuffix("/.default")}
    missing = requests.get(idp.endpoint, params=query, timeout=10)
    wrong = requests.get(idp.endpoint, params=query, headers={"X-IDENTITY-HEADER": "guess"}, timeout=10)
    old_api = requests.get(idp.endpoint, params={**query, "api-version": "2017-09-01"},
                           headers={"X-IDENTITY-HEADER": idp.header}, timeout=10)
    assert (missing.status_code, wrong.status_code, old_api.status_code) == (400, 401, 400)
    assert "access_token" not in wrong.json()

    from azure.core.exceptions import ClientAuthenticationError

    with pytest.raises(ClientAuthenticationError):
        credential(monkeypatch, {**idp.env(), "IDENTITY_HEADER": "guess"}).get_token(DATABRICKS_SCOPE)
    assert idp.issued == before and idp.refused == refused + 4


def test_identity_mode_refuses_a_pat_and_expired_or_foreign_tokens(no_tokens, idp, iplat, clock):
    from databricks.sdk.errors import Unauthenticated

    from shared.workspace import _workspace_client

    with pytest.raises(Unauthenticated):
        list(_workspace_client(iplat.workspace.url, WORKSPACE_TOKEN, 5.0).serving_endpoints.list())
    url = f"{iplat.workspace.url}/api/2.1/unity-catalog/models/main.models.none"
    query = {"api-version": "2019-08-01", "resource": "https://management.azure.com/"}
    foreign = requests.get(idp.endpoint, params=query, headers={"X-IDENTITY-HEADER": idp.header}, timeout=10).json()
    assert requests.get(url, headers={"Authorization": f"Bearer {foreign['access_token']}"},
                        timeout=10).status_code == 401
    query["resource"] = DATABRICKS_SCOPE.removesuffix("/.default")
    fresh = requests.get(idp.endpoint, params=query, headers={"X-IDENTITY-HEADER": idp.header}, timeout=10).json()
    auth = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert requests.get(url, headers=auth, timeout=10).status_code == 404  # authenticated; no such model
    clock.offset = idp.lifetime_seconds + 1
    try:
        assert requests.get(url, headers=auth, timeout=10).status_code == 401
    finally:
        clock.offset = 0.0


def zone_policy(tag: str) -> dict:
    tables = [f"main.f{tag}.pickup_zone_features", f"main.f{tag}.dropoff_zone_features"]
    return {"required_tags": ["validated"], "features": {
        "store": {"kind": "online_feature_store", "name": f"online-{tag}"}, "publish_mode": "triggered",
        "freshness_seconds": 3600, "tables": [{"source": t, "primary_keys": ["zone_id"]} for t in tables],
    }}


def identity_app(plat: Platform, idp: ManagedIdentityEndpoint, tmp: Path) -> tuple[dict[str, str], str, str, str]:
    """App settings in identity mode: no token, the App Service identity variables of a
    user-assigned identity, and the Unity Catalog registry (served by the workspace)."""
    tag = uuid.uuid4().hex[:8]
    model, endpoint = f"main.models.taxi_{tag}", f"taxi-{tag}"
    policy = tmp / "policy.yaml"
    smoke = [{"name": "ids only", "records": taxi.request_records(2),
              "expect": {"prediction_type": "number", "min": 0}}]
    policy.write_text(policy_yaml(model, endpoint, zone_policy(tag), smoke=smoke))
    settings = app_settings(data_dir=tmp, policy=policy, mlflow_url=plat.mlflow.url, workspace_url=plat.workspace.url,
                            watch_schedule=NEVER, identity=idp, client_id=USER_ASSIGNED)
    # The app reaches the registry only through the workspace: Unity Catalog, no MLflow server.
    del settings["MLFLOW_TRACKING_URI"]
    settings["MLFLOW_REGISTRY_URI"] = "databricks-uc"
    assert "DATABRICKS_TOKEN" not in settings
    return settings, model, endpoint, tag


def test_a_full_rollout_with_features_runs_on_the_managed_identity(no_tokens, idp, iplat, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    settings, model, endpoint, tag = identity_app(iplat, idp, tmp_path)
    pickup_df, dropoff_df = taxi.make_zone_feature_tables(n=3000, seed=5)
    ws = iplat.workspace
    pickup, dropoff = f"main.f{tag}.pickup_zone_features", f"main.f{tag}.dropoff_zone_features"
    ws.catalog.create_table(pickup, pickup_df, primary_keys=["zone_id"], change_data_feed=False)
    ws.catalog.create_table(dropoff, dropoff_df, primary_keys=["zone_id"], change_data_feed=False)
    # Registering is the data scientist's side, straight into the registry behind the workspace.
    v = taxi.train_and_register_with_features(iplat.mlflow.url, model, pickup, dropoff, pickup_df, dropoff_df,
                                              n=400, tags={"validated": "yes"})
    issued_before, seen_before = idp.issued, ws.request_mark()
    with function_host(settings) as host:
        app = App(iplat, model, endpoint, settings, tag, host.url, host, open_tables(settings["REACTOR_STORAGE"]),
                  open_queues(settings["REACTOR_STORAGE"]))
        # reconcile: the registry is listed (track latest), the version read (tags), aliases moved.
        enqueue(app.queues, COMMANDS_QUEUE, {"command": "reconcile", "model": model, "environment": "prod"})
        row = app.wait_rollout_end(v, timeout=120)
        assert row["status"] == "done", row
        steps = [h["step"] for h in row["history"]]
        assert steps.index("features") < steps.index("deploy")
        assert app.serving() == [v]
        trip = {"pickup_zone": int(pickup_df.zone_id.iloc[0]), "dropoff_zone": int(dropoff_df.zone_id.iloc[0]),
                "trip_distance": 3.0, "passenger_count": 1, "pickup_hour": 9}
        assert app.w.serving_endpoints.query(endpoint, dataframe_records=[trip]).predictions[0] > 0
        records = json.dumps(journal.list_records(app.tables, None, None), default=str)
        stored = records + json.dumps(rollouts.for_endpoint(app.tables, endpoint), default=str)

    assert app.champion() == v  # the alias moved, read back from the registry itself
    # One credential for the app and every client it built: one token for the whole rollout.
    assert idp.issued == issued_before + 1
    calls = ws.requests_since(seen_before)
    uc = f"/api/2.1/unity-catalog/models/{model}"
    assert ("GET", f"{uc}/versions", 200) in calls  # no mark yet: the newest is found by listing
    assert ("GET", "/api/2.0/mlflow/unity-catalog/model-versions/get", 200) in calls  # with its tags
    assert ("PUT", f"{uc}/aliases/Champion", 200) in calls
    assert not [c for c in calls if c[2] == 401]
    assert f"App Service managed identity with client_id: {USER_ASSIGNED}" in caplog.text
    secrets_ = [*idp.tokens(), idp.header]
    assert not [s for s in secrets_ if s in caplog.text]
    assert not [s for s in secrets_ if s in stored]


def test_the_workspace_registry_goes_through_mlflow_on_the_identity(no_tokens, idp, iplat, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from shared.registry import VersionNotFound, get_version, resolve, set_aliases
    from shared.workspace import registry_client

    name = f"legacy_{uuid.uuid4().hex[:8]}"
    behind = MlflowClient(iplat.mlflow.url)
    behind.create_registered_model(name)
    for _ in range(2):
        behind.create_model_version(name, source="dbfs:/models/legacy", tags={"validated": "yes"})
    for k, v in {"DATABRICKS_HOST": iplat.workspace.url, **idp.env()}.items():
        monkeypatch.setenv(k, v)
    seen = iplat.workspace.request_mark()
    client = registry_client("databricks")
    latest = resolve(client, name)
    assert (latest.version, latest.tags) == ("2", {"validated": "yes"})
    assert get_version(client, name, "1").tags == {"validated": "yes"}
    assert set_aliases(client, name, "1", []) == []  # the workspace registry has no aliases (test_registry)
    with pytest.raises(VersionNotFound):
        get_version(client, name, "9")
    calls = iplat.workspace.requests_since(seen)
    assert ("GET", "/api/2.0/mlflow/model-versions/search", 200) in calls
    assert ("GET", "/api/2.0/mlflow/registered-models/get", 200) in calls

    monkeypatch.setenv("DATABRICKS_TOKEN", WORKSPACE_TOKEN)  # a PAT instead of the identity: refused
    with pytest.raises(MlflowException, match="Invalid access token"):
        get_version(registry_client("databricks"), name, "1")


def test_the_command_line_workspace_runs_in_identity_mode(no_tokens, tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys

    from databricks.sdk.errors import Unauthenticated

    from shared.workspace import _workspace_client

    args = ["--port", "0", "--registry-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--data-dir", str(tmp_path / "ws"),
            "--identity-header", "cli-identity-header", "--log-level", "WARNING"]
    proc = subprocess.Popen([sys.executable, "-m", "local.workspace", *args], cwd=Path(__file__).parents[1],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        endpoint = proc.stdout.readline().strip().removeprefix("IDENTITY_ENDPOINT=")
        cred = credential(monkeypatch, {"IDENTITY_ENDPOINT": endpoint, "IDENTITY_HEADER": "cli-identity-header"})
        assert list(_workspace_client(url, None, 5.0, cred).serving_endpoints.list()) == []
        with pytest.raises(Unauthenticated):
            list(_workspace_client(url, WORKSPACE_TOKEN, 5.0).serving_endpoints.list())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
