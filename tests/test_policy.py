import json
import re
from pathlib import Path

import pytest

from shared.policy import PolicyError, json_schema, load_policy, parse_policy

GOOD = """
version: 1
models:
  - name: taxi_fare
    required_tags: [validated]
    environments:
      prod:
        endpoint: taxi-fare-prod
        track: latest
        served_entity: {workload_size: Small, scale_to_zero: true, environment_vars: {LOG_LEVEL: info}}
        aliases: [Champion]
        smoke:
          - name: typical trip
            records: [{trip_distance: 3.2, passenger_count: 1}]
            expect: {prediction_type: number, min: 0, max_latency_ms: 1500}
        retraining: {job_id: 42, parameters: {model: taxi_fare}}
      staging:
        endpoint: taxi-fare-staging
        track: "@Challenger"
"""


def test_a_valid_policy_loads_with_defaults():
    p = parse_policy(GOOD, "policy.yaml")
    m = p.model("taxi_fare")
    assert m is not None and m.required_tags == ["validated"]
    prod = m.environments["prod"]
    assert prod.endpoint == "taxi-fare-prod" and prod.track_alias is None
    assert prod.served_entity.workload_type == "CPU"
    assert prod.smoke[0].expect.max_latency_ms == 1500 and prod.smoke[0].expect.count is None
    assert prod.retraining.job_id == 42
    staging = m.environments["staging"]
    assert staging.track_alias == "Challenger" and staging.aliases.champion == ["Champion"]
    assert (staging.aliases.challenger, staging.aliases.production) == ("Challenger", "Production")
    assert staging.strategy.kind == "direct" and staging.strategy.stages() == []
    assert p.model("nope") is None


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (("endpoint: taxi-fare-prod", "endpoint: taxi fare prod"),
         "policy.yaml:8:19: models[0].environments.prod.endpoint: 'taxi fare prod' is not an endpoint name: 1 to 63 "
         "letters, digits, '-' or '_'"),
        (("workload_size: Small", "workload_size: Smal"),
         "policy.yaml:10:40: models[0].environments.prod.served_entity.workload_size: 'Smal' is not allowed: expected "
         "one of Small, Medium, Large; did you mean 'Small'?"),
        (("track: latest", "track: newest"),
         "policy.yaml:9:16: models[0].environments.prod.track: must be 'latest' or '@' followed by an alias name"),
        (("max_latency_ms: 1500", "max_latency_ms: -1"),
         "policy.yaml:15:71: models[0].environments.prod.smoke[0].expect.max_latency_ms: -1 is too small: expected a "
         "number greater than 0"),
        (("job_id: 42", "job_id: forty-two"),
         "policy.yaml:16:30: models[0].environments.prod.retraining.job_id: expected a whole number, got 'forty-two'"),
        (("aliases: [Champion]", "aliases: [Champ ion]"),
         "policy.yaml:11:19: models[0].environments.prod.aliases.champion[0]: 'Champ ion' is not an alias name"),
        (("        track: latest\n", "        track: latest\n        trak: latest\n"),
         "policy.yaml:10:9: models[0].environments.prod.trak: unknown key 'trak'; did you mean 'track'?"),
        (("        endpoint: taxi-fare-staging\n", ""),
         "policy.yaml:18:9: models[0].environments.staging.endpoint: missing required key 'endpoint'"),
        (("endpoint: taxi-fare-staging", "endpoint: taxi-fare-prod"),
         "policy.yaml:2:1: (top level): endpoint used by more than one model or environment: ['taxi-fare-prod']"),
    ],
)
def test_errors_name_the_key_its_line_and_column_and_what_was_expected(mutation, expected):
    old, new = mutation
    assert old in GOOD
    with pytest.raises(PolicyError) as err:
        parse_policy(GOOD.replace(old, new, 1), "policy.yaml")
    assert str(err.value).startswith(expected)
    problem = err.value.problems[0]
    assert problem.text("policy.yaml") == str(err.value).splitlines()[0]
    assert "Extra inputs" not in str(err.value) and "String should match" not in str(err.value)


def test_yaml_syntax_errors_give_the_line():
    with pytest.raises(PolicyError, match=r"policy.yaml: line 3, column \d+: not valid YAML"):
        parse_policy("models:\n  - name: x\n  environments: [\n", "policy.yaml")


def test_top_level_must_be_a_mapping():
    with pytest.raises(PolicyError, match="top level must be a mapping"):
        parse_policy("- a\n- b\n", "p.yaml")


def test_missing_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_load_rereads_a_changed_file(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text(GOOD)
    assert load_policy(f).model("taxi_fare").environments["prod"].endpoint == "taxi-fare-prod"
    import os

    f.write_text(GOOD.replace("taxi-fare-prod", "taxi-fare-live"))
    os.utime(f, (1, 1))
    assert load_policy(f).model("taxi_fare").environments["prod"].endpoint == "taxi-fare-live"


def test_committed_schema_matches_the_models():
    committed = json.loads((Path(__file__).parent.parent / "policy.schema.json").read_text())
    assert committed == json_schema(), "run: python -m shared.policy schema > policy.schema.json"


def test_the_shipped_policy_is_valid():
    p = load_policy(Path(__file__).parent.parent / "policy.yaml")
    assert p.models


@pytest.mark.parametrize("registry", ["databricks", "databricks://profile"])
def test_the_workspace_registry_refuses_a_policy_that_needs_aliases(tmp_path, registry):
    """MLflow's workspace-registry store: aliases are "unsupported for models in the Workspace
    Model Registry". Refused when the policy is checked, naming each environment and its use."""
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    with pytest.raises(PolicyError) as err:
        load_policy(path, registry)
    text = str(err.value)
    assert "workspace model registry" in text and "has no aliases" in text and "aliases: []" in text
    assert "taxi_fare].environments.prod: aliases.champion ['Champion']" in text
    assert "environments.staging: track @Challenger, aliases.challenger Challenger" in text
    without = GOOD.replace("aliases: [Champion]", "aliases: []").replace('track: "@Challenger"',
                                                                        "track: latest\n        aliases: []")
    bare = tmp_path / "without-aliases.yaml"
    bare.write_text(without)
    assert load_policy(bare, registry).model("taxi_fare") is not None
    for other in (None, "databricks-uc", "http://127.0.0.1:5000", "sqlite:///m.db"):
        assert load_policy(path, other).model("taxi_fare") is not None


MONITORED = """models:
  - name: m
    features:
      store: {kind: rdbms, connection_setting: X}
      tables: [{source: a.b.c, primary_keys: [id]}]
    environments:
      prod:
        endpoint: e
        inference_table: {catalog: c, schema: s}
        monitoring:
          window: 1h
          checks:
            - {metric: psi, of: features, threshold: 0.2}
            - {metric: custom, name: expected_loss, threshold: 3}
          custom: {expected_loss: "avg(1)"}
          decision: {action: alert}
"""


@pytest.mark.parametrize(
    "mutation, expected",
    [
        (("window: 1h", "window: 90 minutes"),
         "p.yaml:11:19: models[0].environments.prod.monitoring.window: '90 minutes' is not a duration such as 30m, 2h "
         "or 1d"),
        (("metric: psi,", "metric: psii,"),
         "p.yaml:13:24: models[0].environments.prod.monitoring.checks[0].metric: 'psii' is not allowed: expected one "
         "of psi, js, ks, wasserstein, chi2, rmse, mae, f1, accuracy, precision, recall, error_rate, p95_latency_ms, "
         "request_count, custom; did you mean 'psi'?"),
        (("name: expected_loss", "name: expected_los"),
         "p.yaml:11:11: models[0].environments.prod.monitoring: custom metric(s) ['expected_los'] have no SQL in "
         "custom; did you mean 'expected_loss'?"),
        (("kind: rdbms", "kind: rdbs"),
         "p.yaml:4:21: models[0].features.store.kind: 'rdbs' is not allowed: expected one of online_feature_store, "
         "synced_table, rdbms; did you mean 'rdbms'?"),
        (("connection_setting: X", "connection_setting: 9X"),
         "p.yaml:4:48: models[0].features.store.rdbms.connection_setting: '9X' is not an app setting name"),
        (("window: 1h", "window: 1h\n          treshold: 3"),
         "p.yaml:12:11: models[0].environments.prod.monitoring.treshold: unknown key 'treshold'; allowed keys: "
         "preset, window, problem"),
    ],
)
def test_monitoring_errors_say_durations_metrics_and_tags_in_words(mutation, expected):
    old, new = mutation
    assert old in MONITORED
    parse_policy(MONITORED, "p.yaml")
    with pytest.raises(PolicyError) as err:
        parse_policy(MONITORED.replace(old, new, 1), "p.yaml")
    assert str(err.value).startswith(expected)


def test_every_problem_is_listed_with_its_own_place():
    bad = MONITORED.replace("window: 1h", "window: soon").replace("threshold: 0.2", "threshold: high")
    with pytest.raises(PolicyError) as err:
        parse_policy(bad, "p.yaml")
    assert [(p.path, p.line, p.column) for p in err.value.problems] == [
        ("models[0].environments.prod.monitoring.window", 11, 19),
        ("models[0].environments.prod.monitoring.checks[0].threshold", 13, 54)]
    assert "expected a number, got 'high'" in str(err.value)
    assert len(str(err.value).splitlines()) == 2


def test_a_yaml_syntax_error_is_a_problem_with_its_place():
    with pytest.raises(PolicyError) as err:
        parse_policy("models:\n  - name: x\n  environments: [\n", "policy.yaml")
    (problem,) = err.value.problems
    assert (problem.line, problem.message.startswith("not valid YAML")) == (3, True)


_KEY_LINES = [(n, line) for n, line in enumerate(GOOD.splitlines(), 1)
              if re.match(r"\s*(- )?[a-z_]+:", line) and not re.match(r"\s*(prod|staging):", line)]


@pytest.mark.parametrize("number, line", _KEY_LINES, ids=[line.strip() for _, line in _KEY_LINES])
def test_a_misspelt_key_anywhere_is_found_at_its_own_line_and_column(number, line):
    """Every block key of the policy, misspelt, is an unknown key reported where it is written,
    with the key it was meant to be."""
    key = re.match(r"\s*(?:- )?([a-z_]+):", line)
    assert key is not None
    lines = GOOD.splitlines()
    lines[number - 1] = line[:key.start(1)] + key.group(1) + "x" + line[key.end(1):]
    with pytest.raises(PolicyError) as err:
        parse_policy("\n".join(lines), "policy.yaml")
    (problem,) = err.value.problems  # a required key misspelt is not also reported missing
    assert (problem.line, problem.column) == (number, key.start(1) + 1)
    assert problem.message.startswith(f"unknown key '{key.group(1)}x'; did you mean '{key.group(1)}'?")
