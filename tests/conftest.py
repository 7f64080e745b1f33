"""Shared fixtures for scenario tests: the real stack on this machine.

One MLflow server and one local workspace serve the whole session (starting them is the
slow part); each test gets its own model name, endpoint, policy file, state store and
Function host, so tests never see each other's state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from local.azurite import Azurite
from local.stack import WEBHOOK_SECRET, Platform, app_settings, function_host, platform
from shared import journal, rollouts
from shared.queues import QueueService
from shared.signatures import mlflow_signature
from shared.storage import open_queues, open_tables
from shared.tables import TableService
from tests.engine import without_rollback_window

NEVER = "0 0 0 1 1 *"  # a schedule that does not fire during a test


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite (the real Azure Storage protocol) for the session; tests use unique names."""
    with Azurite() as az:
        yield az


@pytest.fixture(params=("sqlite", "azurite"))
def tables(request, tmp_path) -> Iterator[TableService]:
    """Each real table backend, as the app opens it. Azurite is the session's, shared with the
    scenario tests: the tables a test wrote there are dropped after it (they are created again on
    first use), so no later test meets its rows."""
    if request.param == "sqlite":
        yield open_tables(f"sqlite:///{tmp_path / 's.db'}")
        return
    connection = request.getfixturevalue("azurite").connection_string
    yield open_tables("azure", {"AzureWebJobsStorage": connection})
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(connection)
    for table in list(service.list_tables()):
        service.delete_table(table.name)


@pytest.fixture(scope="session")
def plat(tmp_path_factory) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("platform")) as p:
        yield p


def policy_yaml(model: str, endpoint: str, model_fields: dict[str, Any] | None = None, **env_overrides: Any) -> str:
    env = {
        "endpoint": endpoint,
        "track": "latest",
        "aliases": ["Champion"],
        "wait_timeout_seconds": 60,
        "smoke": [{
            "name": "one trip",
            "records": [{"trip_distance": 2.5, "passenger_count": 1, "pickup_hour": 9, "pickup_zone": 3,
                         "dropoff_zone": 7}],
            "expect": {"prediction_type": "number", "min": 0, "max_latency_ms": 5000},
        }],
        # The old version is removed at once once the new one takes all traffic (default: after 30 s).
        "strategy": {"kind": "direct", "bake": "0s"},
        **env_overrides,
    }
    model_policy = {"name": model, **(model_fields or {}), "environments": {"prod": without_rollback_window(env)}}
    return json.dumps({"version": 1, "models": [model_policy]})


@dataclass
class App:
    """One test's Function App, with its own model, endpoint and state."""

    plat: Platform
    model: str
    endpoint: str
    settings: dict[str, str]
    tag: str
    url: str
    host: Any
    tables: TableService
    queues: QueueService
    registered: list[str] = field(default_factory=list)

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(self.plat.mlflow.url)

    @property
    def w(self):
        from shared.workspace import workspace_client

        return workspace_client()

    def register(self, broken: bool = False) -> str:
        from local.taxi import register_broken_version, train_and_register

        if broken:
            v = register_broken_version(self.plat.mlflow.url, model_name=self.model)
        else:
            v = train_and_register(self.plat.mlflow.url, model_name=self.model, seed=len(self.registered), n=300)
        self.registered.append(v)
        return v

    def webhook_body(self, version: str, kind: str = "model_version.created") -> bytes:
        entity, action = kind.rsplit(".", 1)
        return json.dumps({"entity": entity, "action": action, "timestamp": f"2026-11-23T00:00:0{version}Z",
                           "data": {"name": self.model, "version": version}}).encode()

    def post_webhook(self, body: bytes, delivery: str | None = None, secret: str = WEBHOOK_SECRET,
                     ts: int | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        delivery = delivery or str(uuid.uuid4())
        stamp = str(int(time.time()) if ts is None else ts)
        h = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
             "X-MLflow-Signature": mlflow_signature(secret, delivery, stamp, body)}
        if headers is not None:
            h = headers
        return requests.post(f"{self.url}/api/registry/webhook", data=body, headers=h, timeout=30)

    def rollouts(self, version: str | None = None) -> list[dict[str, Any]]:
        rows = rollouts.for_endpoint(self.tables, self.endpoint)
        return [r for r in rows if version is None or r.get("version") == version]

    def wait(self, cond: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = cond()
            if got:
                return got
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; rollouts: {self.rollouts()}")

    def wait_rollout_end(self, version: str, timeout: float = 60) -> dict[str, Any]:
        def ended():
            rows = [r for r in self.rollouts(version) if r["status"] in rollouts.TERMINAL]
            return rows[-1] if rows else None

        return self.wait(ended, timeout, f"the rollout of version {version} to end")

    def serving(self) -> list[str]:
        ep = self.w.serving_endpoints.get(self.endpoint)
        return [e.entity_version for e in ep.config.served_entities] if ep.config else []

    def champion(self) -> str | None:
        return self.client.get_registered_model(self.model).aliases.get("Champion")

    def records(self, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return journal.list_records(self.tables, kind, status)


@pytest.fixture
def make_app(plat, tmp_path, request) -> Iterator[Callable[..., App]]:
    stack: list[Any] = []

    def make(watch_schedule: str = NEVER, model_fields: Callable[[str], dict[str, Any]] | None = None,
             extra_settings: dict[str, str] | None = None, storage: str = "sqlite", **env_overrides: Any) -> App:
        """``model_fields(tag)`` adds model-level policy (features); ``tag`` is unique to the test.
        ``storage="azurite"`` keeps state and queues in Azure Storage (the session's Azurite)."""
        tag = uuid.uuid4().hex[:8]
        model, endpoint = f"taxi_{tag}", f"taxi-{tag}"
        policy = Path(tmp_path / "policy.yaml")
        policy.write_text(policy_yaml(model, endpoint, model_fields(tag) if model_fields else None, **env_overrides))
        azure = request.getfixturevalue("azurite").connection_string if storage == "azurite" else None
        settings = app_settings(data_dir=tmp_path, policy=policy, mlflow_url=plat.mlflow.url,
                                workspace_url=plat.workspace.url, watch_schedule=watch_schedule, azure_storage=azure)
        settings.update(extra_settings or {})
        cm = function_host(settings)
        host = cm.__enter__()
        stack.append(cm)
        url = settings["REACTOR_STORAGE"]
        return App(plat, model, endpoint, settings, tag, host.url, host, open_tables(url, settings),
                   open_queues(url, settings))

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


@pytest.fixture
def zones():
    """Pickup and dropoff zone feature tables (pandas) for the taxi model with features."""
    from local import taxi

    return taxi.make_zone_feature_tables(n=3000, seed=5)


@pytest.fixture
def app(make_app) -> App:
    return make_app()
