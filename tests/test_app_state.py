"""The app settings that cannot work, named (never shown) to operators: shared.app_state.

Pure logic over an environment mapping; the real app over HTTP is driven in
tests/test_webhook_fuzz.py (start-up warnings and ``GET /api/status``) and
tests/test_status_page.py (the banner)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.app_state import setting_problems

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
    for value in values:
        assert value.strip() not in text
