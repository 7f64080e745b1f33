"""Registry reads (``shared.registry``) through the local workspace and the MLflow server behind it.

- Unity Catalog: version tags are read where the platform serves them (MLflow's API for UC
  models, as MLflow's own UC store reads them); UC's ``/api/2.1`` answers hold only the SDK's
  ``ModelVersionInfo`` / ``RegisteredModelInfo`` fields, so no tags.
- The newest version is read without the model's history: one entity on MLflow's registry
  (ordered, limited search), two version reads on Unity Catalog (forward from the known one).
- The workspace registry (``databricks``) has no aliases: the stand-in refuses alias calls as
  MLflow's Databricks workspace store does, and a policy that needs aliases is refused for it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import ModelVersionInfo, RegisteredModelInfo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from local.stack import WORKSPACE_TOKEN
from shared.registry import UnityCatalogRegistry, get_version, newest_version, resolve

VALIDATED = {"validated": "yes"}


@pytest.fixture(scope="module")
def w(plat) -> WorkspaceClient:
    return WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)


@pytest.fixture(scope="module")
def behind(plat) -> MlflowClient:
    """The registry behind the workspace, where data scientists register versions."""
    return MlflowClient(plat.mlflow.url)


def _model(behind: MlflowClient, versions: int, prefix: str = "main.models.") -> str:
    name = f"{prefix}m_{uuid.uuid4().hex[:8]}"
    behind.create_registered_model(name)
    for _ in range(versions):
        behind.create_model_version(name, source="dbfs:/models/x", tags=VALIDATED)
    return name


class CountedSearch:
    """A real ``MlflowClient`` counting the versions its searches return."""

    def __init__(self, inner: MlflowClient) -> None:
        self.inner, self.entities = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def search_model_versions(self, *args: Any, **kw: Any) -> Any:
        found = self.inner.search_model_versions(*args, **kw)
        self.entities += len(found)
        return found


def _requests(plat, fn: Callable[[], Any]) -> tuple[Any, list[tuple[str, str, int]]]:
    mark = plat.workspace.request_mark()
    got = fn()
    return got, plat.workspace.requests_since(mark)


# ---------------------------------------------------------------- Unity Catalog: where tags live
def test_unity_catalog_answers_hold_only_the_sdk_fields_and_no_tags(plat, w, behind):
    name = _model(behind, 2)
    behind.set_registered_model_alias(name, "Champion", "2")
    base = f"/api/2.1/unity-catalog/models/{name}"
    version_fields = {f.name for f in dataclasses.fields(ModelVersionInfo)}
    answers = [w.api_client.do("GET", f"{base}/versions/2", query={"include_aliases": "true"}),
               w.api_client.do("GET", f"{base}/aliases/Champion", query={"include_aliases": "true"}),
               *w.api_client.do("GET", f"{base}/versions")["model_versions"]]
    for body in answers:
        assert set(body) <= version_fields, set(body) - version_fields
    model = w.api_client.do("GET", base, query={"include_aliases": "true"})
    assert set(model) <= {f.name for f in dataclasses.fields(RegisteredModelInfo)}
    assert w.model_versions.get(name, 2, include_aliases=True).aliases[0].alias_name == "Champion"


def test_the_unity_catalog_listing_pages_as_the_sdk_documents(w, behind):
    """``max_results``: 0 is the server's page (100), 1 one version and a token, below 0 refused."""
    from databricks.sdk.errors import InvalidParameterValue

    name = _model(behind, 3)
    path = f"/api/2.1/unity-catalog/models/{name}/versions"
    assert len(w.api_client.do("GET", path, query={"max_results": 0})["model_versions"]) == 3
    first = w.api_client.do("GET", path, query={"max_results": 1})
    assert len(first["model_versions"]) == 1 and first["next_page_token"]
    with pytest.raises(InvalidParameterValue):
        w.api_client.do("GET", path, query={"max_results": -1})
    assert sorted(v.version for v in w.model_versions.list(name, max_results=2)) == [1, 2, 3]


def test_mlflows_own_unity_catalog_store_reads_tags_and_aliases_from_the_workspace(plat, behind, monkeypatch):
    from mlflow.store._unity_catalog.registry.rest_store import UcModelRegistryStore

    name = _model(behind, 2)
    behind.set_registered_model_alias(name, "Champion", "1")
    monkeypatch.setenv("DATABRICKS_HOST", plat.workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", WORKSPACE_TOKEN)
    store = UcModelRegistryStore(store_uri="databricks-uc", tracking_uri="databricks")
    mv = store.get_model_version(name, "1")
    assert (mv.name, mv.version, mv.status, mv.tags, mv.aliases) == (name, "1", "READY", VALIDATED, ["Champion"])
    assert store.get_model_version_by_alias(name, "Champion").version == "1"


def test_required_tags_are_read_where_unity_catalog_serves_them(plat, w, behind):
    name = _model(behind, 2)
    behind.set_registered_model_alias(name, "Champion", "1")
    client = UnityCatalogRegistry(w)
    got, calls = _requests(plat, lambda: get_version(client, name, "2"))
    assert (got.version, got.status, got.tags) == ("2", "READY", VALIDATED)
    assert [c[:2] for c in calls] == [("GET", "/api/2.0/mlflow/unity-catalog/model-versions/get")]
    by_alias = resolve(client, name, alias="Champion")
    assert (by_alias.version, by_alias.tags, by_alias.aliases) == ("1", VALIDATED, ("Champion",))
    assert resolve(client, name).tags == VALIDATED


# ---------------------------------------------------------------- the newest version, bounded
@pytest.mark.parametrize("history", [1, 31])
def test_the_newest_version_is_read_without_the_models_history(plat, w, behind, history):
    name = _model(behind, history)
    counted = CountedSearch(behind)
    assert newest_version(counted, name).version == str(history)
    assert counted.entities == 1  # ordered and limited by the registry
    uc = UnityCatalogRegistry(w)
    got, calls = _requests(plat, lambda: newest_version(uc, name, str(history)))
    assert (got.version, got.tags) == (str(history), VALIDATED)
    assert len(calls) == 2  # the known version, and the next number (none)


def test_unity_catalog_finds_new_and_deleted_newest_versions_from_the_mark(plat, w, behind):
    name = _model(behind, 3)
    uc = UnityCatalogRegistry(w)
    behind.create_model_version(name, source="dbfs:/models/x")
    behind.create_model_version(name, source="dbfs:/models/x")
    assert newest_version(uc, name, "3").version == "5"
    behind.delete_model_version(name, "5")
    assert newest_version(uc, name, "5").version == "4"  # the mark is gone: listed again
    assert newest_version(uc, name, None).version == "4"
    behind.create_model_version(name, source="dbfs:/models/x")  # 6: a deleted number is not given again
    assert newest_version(uc, name, "5").version == "6"
    empty = _model(behind, 0)
    assert newest_version(uc, empty, None) is None
    assert newest_version(CountedSearch(behind), empty) is None


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(["register", "register", "delete_newest", "delete_other"]), min_size=1,
                    max_size=8))
def test_read_after_every_change_the_mark_is_the_newest_existing_version(plat, w, behind, ops):
    """Whatever registrations and deletions happen with a read after each, reading forward from
    the highest number read so far finds what a full listing finds, on both kinds of registry."""
    name = _model(behind, 1)
    uc, mlflow = UnityCatalogRegistry(w), CountedSearch(behind)
    seen = 1
    for op in ops:
        existing = sorted(int(mv.version) for mv in behind.search_model_versions(f"name='{name}'"))
        if op == "register":
            behind.create_model_version(name, source="dbfs:/models/x")
        elif op == "delete_newest" and existing:
            behind.delete_model_version(name, str(existing[-1]))
        elif op == "delete_other" and len(existing) > 1:
            behind.delete_model_version(name, str(existing[0]))
        truth = [int(mv.version) for mv in behind.search_model_versions(f"name='{name}'")]
        expected = str(max(truth)) if truth else None
        found = newest_version(uc, name, str(seen))
        assert (found.version if found else None) == expected, (ops, seen)
        found = newest_version(mlflow, name)
        assert (found.version if found else None) == expected
        seen = max(seen, int(expected or 0))


# ---------------------------------------------------------------- the workspace registry: no aliases
def test_the_workspace_registry_refuses_aliases_as_mlflows_own_store_does(plat, behind, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.store.model_registry.databricks_workspace_model_registry_rest_store import (
        DatabricksWorkspaceModelRegistryRestStore,
    )

    from shared.workspace import registry_client

    name = _model(behind, 3, prefix="legacy_")
    monkeypatch.setenv("DATABRICKS_HOST", plat.workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", WORKSPACE_TOKEN)
    ours = registry_client("databricks")
    mlflows = DatabricksWorkspaceModelRegistryRestStore("databricks", "databricks")
    calls = [lambda c: c.set_registered_model_alias(name, "Champion", "1"),
             lambda c: c.delete_registered_model_alias(name, "Champion"),
             lambda c: c.get_model_version_by_alias(name, "Champion")]
    for call in calls:
        with pytest.raises(MlflowException, match="unsupported for models in the Workspace Model Registry"):
            call(mlflows)
        with pytest.raises(MlflowException, match=r"ENDPOINT_NOT_FOUND|No API found"):
            call(ours)
    assert behind.get_registered_model(name).aliases == {}
    counted = CountedSearch(ours)
    newest = newest_version(counted, name)  # ordered and limited by the workspace registry too
    assert (newest.version, newest.tags, counted.entities) == ("3", VALIDATED, 1)


# ---------------------------------------------------------------- the watcher on Unity Catalog
def test_the_watcher_reads_on_from_the_highest_number_it_saw(plat, w, behind, tmp_path):
    """Through the watcher's tick on Unity Catalog: a quiet tick reads two versions and lists
    nothing; a deleted newest version is noticed and the next number is still found."""
    import json

    from handlers import watcher
    from tests.engine import Driver

    name = _model(behind, 2)
    d = Driver(tmp_path)
    policy = json.loads(Path(d.deps.settings.policy_file).read_text())
    policy["models"][0]["name"] = name
    Path(d.deps.settings.policy_file).write_text(json.dumps(policy))
    d.deps.registry = lambda: UnityCatalogRegistry(w)
    listing = f"/api/2.1/unity-catalog/models/{name}/versions"

    def tick() -> tuple[int, dict[str, Any], list[tuple[str, str, int]]]:
        noticed, calls = _requests(plat, lambda: watcher.tick(d.deps)["noticed"])
        return noticed, d.raw_tables.get(watcher.WATERMARKS, "registry", name).data, calls

    noticed, row, calls = tick()
    assert noticed == 1 and (row["mark"]["latest"], row["seen"]) == ("2", "2")
    assert ("GET", listing, 200) in calls  # no mark yet
    noticed, row, calls = tick()
    gets = [c for c in calls if c[1] == "/api/2.0/mlflow/unity-catalog/model-versions/get"]
    assert noticed == 0 and len(gets) == 2 and not [c for c in calls if c[1] == listing]
    behind.delete_model_version(name, "2")
    noticed, row, _ = tick()
    assert noticed == 1 and (row["mark"]["latest"], row["seen"]) == ("1", "2")
    behind.create_model_version(name, source="dbfs:/models/x", tags=VALIDATED)  # 3
    noticed, row, _ = tick()
    assert noticed == 1 and (row["mark"]["latest"], row["seen"]) == ("3", "3")
