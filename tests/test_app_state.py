"""The app settings that cannot work, named (never shown) to operators, and the last
authorization failure a step met: shared.app_state.

Pure logic over an environment mapping, and the engine's real handlers (below); the real app over HTTP is driven in
tests/test_webhook_fuzz.py (start-up warnings and ``GET /api/status``) and
tests/test_status_page.py (the banner)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers import operators
from handlers.http_types import Request
from shared.app_state import DENIED_ATTENTION_SECONDS, TABLE, refusal, setting_problems
from tests.engine import ENDPOINT, Driver
from tests.test_progressive_engine import deploy

GUID = "6f1c1e0a-4b1d-4f6e-9a55-2c1d3b7e8f90"
HOST = "https://adb-5555555555555555.19.azuredatabricks.net"
KV = "@Microsoft.KeyVault(SecretUri=https://kv-reactor.vault.azure.net/secrets/databricks-token)"
AZURE = {"WEBSITE_INSTANCE_ID": "abc123"}


def named(env: dict[str, str], required: tuple[str, ...] = ()) -> list[str]:
    return [p.setting for p in setting_problems(env, required)]


@pytest.mark.parametrize("env", [
    {"DATABRICKS_HOST": HOST, "AZURE_CLIENT_ID": GUID, **AZURE},
    {"DATABRICKS_HOST": HOST + "/", "DATABRICKS_TOKEN": "dapi0123"},
    {"DATABRICKS_HOST": "http://127.0.0.1:8080"},  # the local stand-in workspace
    {},  # locally, nothing is asked of a developer who runs no Databricks call
])
def test_settings_that_work_are_not_reported(env):
    assert setting_problems(env) == []


@pytest.mark.parametrize("env, setting", [
    ({**AZURE}, "DATABRICKS_HOST"),  # a Function App without a workspace
    ({"DATABRICKS_HOST": "adb-5555555555555555.19.azuredatabricks.net"}, "DATABRICKS_HOST"),  # no scheme
    ({"DATABRICKS_HOST": "http://adb-5555555555555555.19.azuredatabricks.net"}, "DATABRICKS_HOST"),
    ({"DATABRICKS_HOST": "https://[::1"}, "DATABRICKS_HOST"),  # urlsplit raises
    ({"DATABRICKS_HOST": HOST, "AZURE_CLIENT_ID": "reactor-identity"}, "AZURE_CLIENT_ID"),
    ({"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": "dapi0123", "AZURE_CLIENT_ID": GUID}, "DATABRICKS_TOKEN"),
    ({"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": "{{secrets/reactor/token}}"}, "DATABRICKS_TOKEN"),
    ({"DATABRICKS_HOST": HOST, "DATABRICKS_TOKEN": KV}, "DATABRICKS_TOKEN"),
    ({"DATABRICKS_HOST": KV}, "DATABRICKS_HOST"),
    ({"DATABRICKS_HOST": HOST, "ONLINE_STORE_URL": KV.lower()}, "ONLINE_STORE_URL"),
])
def test_each_malformed_or_unresolved_setting_is_named_once(env, setting):
    assert named(env) == [setting]


def test_a_webhook_secret_is_left_to_the_signature_check_and_a_required_setting_must_be_set():
    env = {"DATABRICKS_HOST": HOST, "MLFLOW_WEBHOOK_SECRET": KV, "ONLINE_STORE_URL": ""}
    assert named(env, ("ONLINE_STORE_URL",)) == ["ONLINE_STORE_URL"]
    assert named({**env, "ONLINE_STORE_URL": "postgresql://u:p@db/x"}, ("ONLINE_STORE_URL",)) == []


_VALUE = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), min_size=12, max_size=60).filter(
    lambda v: len(v.strip()) >= 12)


@settings(max_examples=200, deadline=None)
@given(host=_VALUE, token=_VALUE, client_id=_VALUE, other=_VALUE, reference=st.booleans())
def test_no_problem_ever_quotes_a_value(host, token, client_id, other, reference):
    """Whatever the settings hold, what operators are told names settings and never repeats a
    value (a token, a connection URL, a reference a caller could sign with)."""
    values = [host, token, client_id, KV + other if reference else other]
    env = dict(zip(("DATABRICKS_HOST", "DATABRICKS_TOKEN", "AZURE_CLIENT_ID", "ONLINE_STORE_URL"), values, strict=True))
    text = " ".join(f"{p.setting} {p.line()}" for p in setting_problems({**env, **AZURE}, ("ONLINE_STORE_URL",)))
    # The settings' names are what the problems must name; a value may happen to spell part of
    # one (hypothesis found "AZURE_CLIENT"), which repeats no value.
    for name in sorted({*env, *AZURE}, key=len, reverse=True):
        text = text.replace(name, " ")
    for value in values:
        assert value.strip() not in text


# The last authorization failure a step met (shared.app_state.note_denied), through the real
# rollout handlers over real SQLite state (tests/engine.py), the refusal raised as databricks-sdk
# raises a 403.


def app_of(d: Driver) -> dict:
    """``GET /api/status``'s ``app`` as the handler answers it (JSON)."""
    resp = operators.status(d.deps, Request("GET", b"", {}, {}))
    assert resp.status == 200
    return json.loads(resp.body)["app"]


def test_a_refused_endpoint_write_is_shown_as_the_last_authorization_failure(tmp_path):
    d = Driver(tmp_path)
    d.serving_api.denied = True
    deploy(d, d.registry.register())
    d.run()
    (row,) = d.rollouts()
    assert row["status"] == "failed" and "PermissionDenied" in row["reason"]
    app = app_of(d)
    denied = app["authorization"]
    assert denied["code"] == "PERMISSION_DENIED" and denied["where"] == f"rollout step deploy on {ENDPOINT}"
    assert "CAN_MANAGE" in denied["detail"] and denied["at"] == pytest.approx(d.clock(), abs=3600)
    assert any(line.startswith(f"rollout step deploy on {ENDPOINT} was refused (PERMISSION_DENIED)")
               for line in app["attention"])
    # One row however many refusals (each retry met one), read with one point read.
    assert len(d.raw_tables.query_page(TABLE).entities) == 1
    d.clock.now += DENIED_ATTENTION_SECONDS + 1
    later = app_of(d)
    assert later["authorization"] == denied and not any("refused" in line for line in later["attention"])


def test_a_failure_that_is_no_refusal_is_not_kept(tmp_path):
    d = Driver(tmp_path)
    v = d.registry.register()
    d.serving_api.fails_load.add(v)
    deploy(d, v)
    d.run()
    assert d.rollouts()[0]["status"] == "failed"
    assert app_of(d)["authorization"] is None


def _storage_403() -> Exception:
    from azure.core.exceptions import HttpResponseError

    # What azure-core sets from a 403 answer of Azure Storage (status and x-ms-error-code).
    exc = HttpResponseError(message="This request is not authorized to perform this operation using this permission.")
    exc.status_code, exc.error_code = 403, "AuthorizationPermissionMismatch"
    return exc


def test_refusals_are_told_apart_from_other_failures_and_found_behind_a_wrapper():
    from databricks.sdk.errors import NotFound, PermissionDenied
    from mlflow.exceptions import RestException

    assert refusal(PermissionDenied("no", error_code="PERMISSION_DENIED")) == "PERMISSION_DENIED"
    assert refusal(RestException({"error_code": "PERMISSION_DENIED", "message": "no"})) == "PERMISSION_DENIED"
    assert refusal(_storage_403()) == "AuthorizationPermissionMismatch"
    try:
        try:
            raise _storage_403()
        except Exception as inner:
            raise RuntimeError("enqueue failed") from inner
    except RuntimeError as wrapped:
        assert refusal(wrapped) == "AuthorizationPermissionMismatch"
    assert refusal(NotFound("gone", error_code="RESOURCE_DOES_NOT_EXIST")) is None
    assert refusal(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "x"})) is None
    assert refusal(ValueError("x")) is None


def test_an_invalid_policy_is_shown_with_each_problems_place_not_answered_as_an_outage(tmp_path):
    d = Driver(tmp_path)
    assert app_of(d)["policy"] == {"valid": True, "problems": []}
    path = d.deps.settings.policy_file
    path.write_text("models:\n  - name: m\n    environments:\n      prod: {endpoint: e, trak: latest}\n")
    os.utime(path, (1, 1))  # the policy is cached by modification time
    resp = operators.status(d.deps, Request("GET", b"", {}, {}))
    body = json.loads(resp.body)
    assert resp.status == 200 and body["status"] == []
    (problem,) = body["app"]["policy"]["problems"]
    assert problem == {"path": "models[0].environments.prod.trak", "line": 4, "column": 27, "severity": "error",
                       "message": "unknown key 'trak'; did you mean 'track'?"}
    assert body["app"]["attention"][0] == (f"the policy file is invalid: {path}:4:27: models[0].environments.prod."
                                           "trak: unknown key 'trak'; did you mean 'track'?")
