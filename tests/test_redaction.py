"""Secrets never reach reasons, logs or records in clear: one redaction (shared.redaction) for all."""

from __future__ import annotations

import json
import logging

import pytest

from shared.log import step
from shared.online_store import OnlineStore, OnlineStoreError
from shared.online_store import redact as redact_store_url
from shared.redaction import MASK, contains_secret, is_secret_name, is_secret_reference, redact, redact_value

PAT = "dapi0123456789abcdef0123456789abcdef"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAiLCJhdWQiOiIyZmY4In0.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    "text, secret, expected",
    [
        ("postgresql://app:hunter2@db.example:5432/feat", "hunter2", "postgresql://app:***@db.example:5432/feat"),
        # An unencoded '@' in the password: user-info ends at the last '@', as urlsplit reads it.
        ("mysql://root:p@ss@127.0.0.1:3306/test", "p@ss", "mysql://root:***@127.0.0.1:3306/test"),
        ("postgresql://app@db/feat?password=hunter2&sslmode=require", "hunter2",
         "postgresql://app@db/feat?password=***&sslmode=require"),
        ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=AbC%2Bd%3D&se=2026-01-01", "AbC%2Bd%3D",
         "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=***&se=2026-01-01"),
        ("https://app/cb#access_token=tok123456&token_type=bearer", "tok123456",
         "https://app/cb#access_token=***&token_type=bearer"),
        ("POST /token client_id=abc&client_secret=s3cr3t&grant_type=x", "s3cr3t",
         "POST /token client_id=abc&client_secret=***&grant_type=x"),
        ("https://maps.example/api?key=AIzaSyA1&q=x", "AIzaSyA1", "https://maps.example/api?key=***&q=x"),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl", "Authorization: Bearer ***"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz", "{'Authorization': 'Basic ***'}"),
        ("request failed: Bearer zzzzzzzzzzzz rejected", "zzzzzzzzzzzz", "request failed: Bearer *** rejected"),
        (f"DATABRICKS_HOST=https://adb.net token {PAT}-2 expired", PAT, "DATABRICKS_HOST=https://adb.net token "
         "dapi*** expired"),
        (f"claims {JWT} invalid", JWT, "claims *** invalid"),
        ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a1b2+/c3==;EndpointSuffix=core.windows.net",
         "a1b2+/c3==",
         "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=***;EndpointSuffix=core.windows.net"),
        ("BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2020-08-04&sig=XyZ",
         "XyZ", "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=***&sig=***"),
        ("host=db port=5432 user=app password='my secret' dbname=feat", "my secret",
         "host=db port=5432 user=app password='***' dbname=feat"),
        ("Server=db;User Id=app;Pwd=hunter2;", "hunter2", "Server=db;User Id=app;Pwd=***;"),
        ('excerpt {"user": "app", "password": "hunter2", "key": "msg~1"}', "hunter2",
         'excerpt {"user": "app", "password": "***", "key": "msg~1"}'),
    ],
)
def test_every_documented_credential_shape_is_masked(text: str, secret: str, expected: str) -> None:
    out = redact(text)
    assert out == expected
    assert secret not in out
    assert redact(out) == out  # idempotent: records redacted twice stay the same
    assert contains_secret(text) and not contains_secret(out)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://postgres@127.0.0.1:5432/test",
        "https://adb-1.azuredatabricks.net:443/api/2.0/serving-endpoints",
        "sqlite:////tmp/state.db",
        "Bearer token expired",
        "endpoint taxi-fare-prod is NOT_UPDATING; token_type=bearer",
        "{{secrets/feature_store/mariadb_url}}",
        "record msg~9f8e in partition command",
    ],
)
def test_text_without_credentials_is_left_alone(text: str) -> None:
    assert redact(text) == text
    assert not contains_secret(text)


def test_secret_names_are_the_secret_looking_ones_and_identifiers_are_not() -> None:
    secret = ["password", "DB_PASSWORD", "pwd", "client_secret", "MLFLOW_WEBHOOK_SECRET", "token", "access_token",
              "idToken", "DATABRICKS_TOKEN", "credentials", "api_key", "x-api-key", "AccountKey", "private_key",
              "Authorization", "connection_string"]
    plain = ["key", "primary_keys", "timeseries_key", "max_tokens", "token_type", "claim_holder", "connection_setting",
             "endpoint", "reason"]
    assert [n for n in secret if not is_secret_name(n)] == []
    assert [n for n in plain if is_secret_name(n)] == []


def test_redact_value_walks_records_and_masks_secret_fields_whole() -> None:
    record = {
        "key": "msg~1",
        "reason": "cannot connect to postgresql://app@db/feat?password=hunter2",
        "config": {"served_entities": [{"environment_vars": {
            "FEATURES_URL": "mysql://root:pw@db/feat", "OPENAI_API_KEY": "{{secrets/llm/openai}}",
            "DATABRICKS_TOKEN": PAT}}]},
        "headers": ("Authorization", "Bearer abcdefghijkl"),
        "password": 12345,
        "client_secret": None,
        "attempts": 3,
    }
    out = redact_value(record)
    assert out == {
        "key": "msg~1",
        "reason": "cannot connect to postgresql://app@db/feat?password=***",
        "config": {"served_entities": [{"environment_vars": {
            "FEATURES_URL": "mysql://root:***@db/feat", "OPENAI_API_KEY": "{{secrets/llm/openai}}",
            "DATABRICKS_TOKEN": MASK}}]},
        "headers": ("Authorization", "Bearer ***"),
        "password": MASK,
        "client_secret": None,
        "attempts": 3,
    }
    assert record["password"] == 12345  # a copy: the caller's object is not changed
    assert redact_value(out) == out


def test_secret_references_are_recognised() -> None:
    assert is_secret_reference("{{secrets/my_scope/my_key}}")
    assert is_secret_reference(" {{secrets/scope.a-1/key_2.b}} ")
    assert is_secret_reference("@Microsoft.KeyVault(VaultName=v;SecretName=s)")
    assert not is_secret_reference("{{secrets/my scope/my_key}}")
    assert not is_secret_reference("{{secrets/only_scope}}")
    assert not is_secret_reference("prefix {{secrets/s/k}}")


def test_every_logged_step_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reactor")
    step("store.unavailable", logging.WARNING,
         reason="cannot connect to the online store at postgresql://app@db/feat?password=hunter2",
         headers={"Authorization": "Bearer abcdefghijkl", "Content-Type": "application/json"},
         nested=[{"client_secret": "s3cr3t", "n": 1}],
         error=RuntimeError("mysql://root:pw-in-exception@db/feat refused"))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "reactor"]
    for secret in ("hunter2", "abcdefghijkl", "s3cr3t", "pw-in-exception"):
        assert secret not in line
    logged = json.loads(line)
    assert logged["event"] == "store.unavailable"
    assert logged["reason"].endswith("postgresql://app@db/feat?password=***")
    assert logged["headers"] == {"Authorization": MASK, "Content-Type": "application/json"}  # a secret-named field
    assert logged["nested"] == [{"client_secret": MASK, "n": 1}]
    assert logged["error"] == "mysql://root:***@db/feat refused"


def test_the_online_store_url_in_a_failure_reason_hides_a_query_password() -> None:
    url = "postgresql://app@127.0.0.1:1/feat?password=hunter2&connect_timeout=5"
    assert redact_store_url(url) == "postgresql://app@127.0.0.1:1/feat?password=***&connect_timeout=5"
    # The real driver against a closed loopback port: the reason names the store, not its password.
    with pytest.raises(OnlineStoreError) as err:
        OnlineStore(url)
    assert "hunter2" not in str(err.value)
    assert "postgresql://app@127.0.0.1:1/feat?password=***" in str(err.value)
