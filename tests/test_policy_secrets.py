"""Served-entity environment variables carry secrets only as Databricks secret references."""

from __future__ import annotations

import json
import re

import pytest

from shared.policy import PolicyError, parse_policy

PAT = "dapi0123456789abcdef0123456789abcdef"


def _policy(env: dict[str, str]) -> str:
    return json.dumps({"version": 1, "models": [{"name": "taxi_fare", "environments": {"prod": {
        "endpoint": "taxi-fare-prod", "served_entity": {"environment_vars": env}}}}]})


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_PASSWORD", "hunter2"),
        ("OPENAI_API_KEY", "sk-live-abc"),
        ("DATABRICKS_TOKEN", "not-a-reference"),
        ("SERVICE_CREDENTIAL", "x"),
        ("mysql_pwd", "x"),
        ("WEBHOOK_SECRET", "{{secrets/bad scope/key}}"),  # not a valid reference: scope names have no spaces
        ("FEATURES_URL", "mysql://root:hunter2@db.example:3306/feat"),
        ("FEATURES_URL", "postgresql://app@db.example/feat?password=hunter2"),
        ("WORKSPACE", f"https://adb.example {PAT}"),
    ],
)
def test_a_plain_secret_is_refused_naming_the_variable_and_the_fix(name: str, value: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(_policy({"LOG_LEVEL": "info", name: value}), "policy.yaml")
    message = str(err.value)
    assert re.match(r"policy\.yaml:1:\d+: models\[0\]\.environments\.prod\.served_entity\.environment_vars: ",
                    message)
    assert f"{name} looks like a secret but holds a plain value" in message
    assert "use a secret reference '{{secrets/<scope>/<key>}}'" in message
    assert "LOG_LEVEL" not in message


def test_secret_references_and_plain_settings_are_accepted() -> None:
    env = {"OPENAI_API_KEY": "{{secrets/llm/openai_key}}", "DB_PASSWORD": "{{secrets/feature-store/db.password}}",
           "FEATURES_URL": "{{secrets/feature-store/mariadb_url}}", "LOG_LEVEL": "info",
           "LOCAL_FEATURES_URL": "mysql://root@127.0.0.1:3306/test", "MLFLOW_TRACKING_URI": "databricks"}
    policy = parse_policy(_policy(env), "policy.yaml")
    assert policy.models[0].environments["prod"].served_entity.environment_vars == env


@pytest.mark.parametrize("value", ["12345", "[hunter2]", "{x: hunter2}"])
def test_a_value_of_the_wrong_type_is_refused_without_quoting_it(value: str) -> None:
    """An error message reaches logs and GET /api/status: a password given as a number is described,
    never quoted."""
    text = _policy({"DB_PASSWORD": "{{secrets/s/k}}"}).replace('"{{secrets/s/k}}"', value)
    assert value in text
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "policy.yaml")
    message = str(err.value)
    assert "environment_vars.DB_PASSWORD: expected text, got" in message
    assert "12345" not in message and "hunter2" not in message
