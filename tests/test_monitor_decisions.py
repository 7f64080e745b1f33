"""The monitor's decision logic and its policy, as pure functions: N-of-M, hysteresis, groups,
minimum rows, cooldown, the idempotency token, and errors that name the key."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.monitor import idempotency_token
from shared.monitoring import decide
from shared.monitoring.policy import Check, Decision, Monitoring
from shared.policy import PolicyError, parse_policy

PSI = Check(metric="psi", of="features", threshold=0.2)
F1 = Check(metric="f1", threshold=0.5)


def test_a_figure_past_its_threshold_violates_and_on_the_healthy_side_does_not():
    assert decide.judge(PSI, 0.25, 500, 100, was_violating=False).verdict == decide.VIOLATION
    assert decide.judge(PSI, 0.15, 500, 100, was_violating=False).verdict == decide.OK
    # A score that falls is the violation for f1.
    assert decide.judge(F1, 0.4, 500, 100, was_violating=False).verdict == decide.VIOLATION
    assert decide.judge(F1, 0.6, 500, 100, was_violating=False).verdict == decide.OK


def test_hysteresis_keeps_a_violation_until_the_figure_is_back_past_the_clear_threshold():
    assert PSI.clear_at == pytest.approx(0.16)
    # Between clear (0.16) and threshold (0.2): violating only if it violated before.
    assert decide.judge(PSI, 0.18, 500, 100, was_violating=True).verdict == decide.VIOLATION
    assert decide.judge(PSI, 0.18, 500, 100, was_violating=False).verdict == decide.OK
    assert decide.judge(PSI, 0.15, 500, 100, was_violating=True).verdict == decide.OK
    below = Check(metric="f1", threshold=0.5, clear=0.6)
    assert decide.judge(below, 0.55, 500, 100, was_violating=True).verdict == decide.VIOLATION
    assert decide.judge(below, 0.65, 500, 100, was_violating=True).verdict == decide.OK


def test_too_few_rows_is_insufficient_data_never_a_violation():
    f = decide.judge(PSI, 9.0, 99, 100, was_violating=True)
    assert f.verdict == decide.INSUFFICIENT
    assert decide.window_verdict([f]) == decide.INSUFFICIENT
    assert decide.decide([decide.VIOLATION, decide.INSUFFICIENT], Decision(windows=2, violations=1), now=0,
                         last_action_at=None, cooldown_seconds=0).verdict == decide.INSUFFICIENT_DATA


def test_a_group_violates_only_when_all_its_checks_do():
    a = decide.judge(Check(metric="js", of="prediction", threshold=0.19, group="drift"), 0.3, 500, 100,
                     was_violating=False)
    b = decide.judge(Check(metric="js", of="label", threshold=0.19, group="drift"), 0.1, 500, 100,
                     was_violating=False)
    assert decide.window_verdict([a, b]) == decide.OK
    c = decide.judge(Check(metric="js", of="label", threshold=0.19, group="drift"), 0.2, 500, 100, was_violating=False)
    assert decide.window_verdict([a, c]) == decide.VIOLATION


def test_absolute_compares_the_magnitude():
    loss = Check(metric="custom", name="expected_loss", threshold=30, absolute=True)
    assert decide.judge(loss, -31.0, 500, 100, was_violating=False).verdict == decide.VIOLATION
    assert decide.judge(loss, -29.0, 500, 100, was_violating=False).verdict == decide.OK


V, K = decide.VIOLATION, decide.OK


@pytest.mark.parametrize(("history", "want"), [
    ([K, V, K, V, V], decide.VIOLATION),    # 3 of 5, the latest among them
    ([V, V, V, V, K], decide.OK),           # the latest window is fine: the violation is over
    ([K, K, K, K, V], decide.OK),           # only 1 of 5
    ([V, K, K, K, K, K, V], decide.OK),     # the old violation fell out of the last 5
    ([K, K, K, V, V], decide.VIOLATION),
])
def test_n_of_m_counts_the_latest_m_windows_and_needs_the_newest(history, want):
    got = decide.decide(history, Decision(windows=5, violations=2), now=100, last_action_at=None, cooldown_seconds=60)
    assert got.verdict == want


def test_a_violation_within_the_cooldown_is_recorded_as_cooldown():
    rule = Decision(windows=1, violations=1)
    assert decide.decide([V], rule, now=100, last_action_at=50, cooldown_seconds=60).verdict == decide.COOLDOWN
    assert decide.decide([V], rule, now=111, last_action_at=50, cooldown_seconds=60).verdict == decide.VIOLATION


@given(st.lists(st.sampled_from([V, K]), min_size=1, max_size=30), st.integers(1, 10), st.integers(1, 10))
def test_the_decision_never_acts_unless_n_of_the_last_m_and_the_newest_violate(history, m, n):
    n = min(n, m)
    got = decide.decide(history, Decision(windows=m, violations=n), now=0, last_action_at=None, cooldown_seconds=0)
    last = history[-m:]
    assert (got.verdict == decide.VIOLATION) == (last[-1] == V and last.count(V) >= n)


def test_the_idempotency_token_depends_on_job_model_environment_version_and_window_only():
    a = idempotency_token(7, "taxi", "prod", "2", 3600.0, "cmd-1")
    assert a == idempotency_token(7, "taxi", "prod", "2", 3600.0, "cmd-2")
    assert len(a) <= 64
    assert a != idempotency_token(7, "taxi", "prod", "3", 3600.0, "cmd-1")
    assert a != idempotency_token(7, "taxi", "prod", "2", 7200.0, "cmd-1")
    assert a != idempotency_token(8, "taxi", "prod", "2", 3600.0, "cmd-1")
    # Without a window (a retrain command from another system), the command's own key.
    assert idempotency_token(7, "taxi", "prod", None, None, "k1") != idempotency_token(7, "taxi", "prod", None, None,
                                                                                       "k2")


POLICY = """
models:
  - name: churn
    environments:
      prod:
        endpoint: churn
        retraining: {{job_id: 7}}
        inference_table: {{catalog: main, schema: mon}}
        monitoring:
{monitoring}
"""


def _policy(monitoring: str):
    body = "\n".join("          " + line for line in monitoring.strip().splitlines())
    return parse_policy(POLICY.format(monitoring=body), "policy.yaml")


def test_the_databricks_preset_is_the_dbdemos_rule():
    p = _policy("""
preset: databricks
problem: classification
labels: {table: main.mon.labels, key: id, column: churn}
custom: {expected_loss: "avg(CASE WHEN {{prediction_col}} != {{label_col}} THEN -1 ELSE 0 END)"}
""")
    m = p.models[0].environments["prod"].monitoring
    assert m is not None
    got = {(c.metric, c.of, c.threshold, c.group, c.absolute) for c in m.all_checks}
    assert got == {("js", "prediction", 0.19, "drift", False), ("js", "label", 0.19, "drift", False),
                   ("f1", None, 0.5, "performance", False), ("custom", None, 30, "performance", True)}


@pytest.mark.parametrize(("monitoring", "message"), [
    ("checks: [{metric: psi, threshold: 0.2}]", "monitoring.checks[0]: a psi check needs 'of'"),
    ("window: 5 minutes\nchecks: [{metric: psi, of: features, threshold: 0.2}]",
     "monitoring.window: '5 minutes' is not a duration such as 30m, 2h or 1d"),
    ("checks: [{metric: rmse, threshold: 3}]", "rmse need labels"),
    ("preset: databricks\nproblem: classification\nlabels: {table: a.b.c, key: id, column: y}",
     "the databricks preset needs custom.expected_loss"),
    ("checks: [{metric: f1, threshold: 0.5}]\nlabels: {table: a.b.c, key: id, column: y}",
     "f1 do not measure a regression model"),
    ("decision: {windows: 2, violations: 3}\nchecks: [{metric: psi, of: features, threshold: 0.2}]",
     "violations (3) cannot exceed windows (2)"),
    ("checks: [{metric: psi, of: features, threshold: 0.2, clear: 0.3}]", "clear (0.3) must be on the healthy side"),
    ("checks: [{metric: psi, of: features, threshold: 0.2}]\nbaseline: {version_column: v}", "set table"),
    ("checks: []", "no checks"),
    ("checks: [{metric: psi, of: features, threshold: 0.2}]\nlabels: {table: nodots, key: id, column: y}",
     "monitoring.labels.table"),
])
def test_an_invalid_monitoring_policy_names_the_key(monitoring, message):
    with pytest.raises(PolicyError) as err:
        _policy(monitoring)
    assert "models[0].environments.prod" in str(err.value) and message in str(err.value)


def test_monitoring_needs_an_inference_table_and_a_job_to_retrain_with():
    text = """
models:
  - name: m
    environments:
      prod:
        endpoint: e
        monitoring: {checks: [{metric: psi, of: features, threshold: 0.2}]}
"""
    with pytest.raises(PolicyError, match="set inference_table"):
        parse_policy(text)
    with pytest.raises(PolicyError, match="set retraining"):
        parse_policy(text.replace("endpoint: e", "endpoint: e\n        inference_table: {catalog: c, schema: s}"))


def test_defaults_follow_the_model_kind():
    m = Monitoring(checks=[PSI])
    assert m.prediction_kind == "numeric" and m.window_seconds == 3600 and m.decision.min_rows == 100
    assert Monitoring(problem="classification", checks=[PSI]).prediction_kind == "categorical"


def _deps(tmp_path, action: str, within: str = "1d"):
    import json

    from handlers.deps import Deps
    from shared.queues.sqlite import SqliteQueueService
    from shared.settings import Settings
    from shared.tables.sqlite import SqliteTableService

    policy = {"models": [{"name": "m", "environments": {"prod": {
        "endpoint": "ep", "inference_table": {"catalog": "c", "schema": "s"},
        "monitoring": {"checks": [{"metric": "rmse", "threshold": 5}],
                       "labels": {"table": "c.s.l", "key": "k", "column": "y"},
                       "decision": {"action": action, "rollback_within": within}}}}}]}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    db = str(tmp_path / "state.db")
    settings = Settings.from_env({"REACTOR_STORAGE": f"sqlite:///{db}",
                                  "REACTOR_POLICY_FILE": str(tmp_path / "policy.json")})
    tables = SqliteTableService(db)
    for rid, version, at in (("r1", "1", 1000.0), ("r2", "2", 5000.0)):
        tables.insert("rollouts", "ep", rid, {"id": rid, "endpoint": "ep", "version": version, "status": "done",
                                              "created_at": at, "finished_at": at + 10})
    return Deps(settings, tables, SqliteQueueService(db), lambda: None, lambda: None, clock=lambda: 5000.0 + 3600)


def _decide_and_act(deps):
    from handlers import monitor

    mp = deps.policy().model("m")
    env = mp.environments["prod"]
    row = {"id": "1796184000000-abcd1234", "version": "2", "reason": "rmse 9 > 5", "window": {"start": 0.0}}
    return monitor._act(deps, mp, "prod", env, row)


def test_a_rollback_decision_deploys_the_version_that_served_before(tmp_path):
    from shared import journal

    deps = _deps(tmp_path, "rollback")
    assert _decide_and_act(deps) == "rolling back to version 1"
    sent = [r for r in journal.list_records(deps.tables, "command") if r["command"]["command"] == "deploy"]
    assert len(sent) == 1 and sent[0]["command"]["version"] == "1" and sent[0]["status"] == "accepted"
    # The same decision acting again (a redelivery) sends nothing new: the command's key is the decision's.
    _decide_and_act(deps)
    assert len([r for r in journal.list_records(deps.tables, "command")
                if r["command"]["command"] == "deploy"]) == 1


def test_a_rollback_long_after_the_rollout_is_only_an_alert(tmp_path):
    from shared import journal

    deps = _deps(tmp_path, "rollback", within="30m")  # version 2 has served for an hour
    assert _decide_and_act(deps) == "alert recorded"
    assert not journal.list_records(deps.tables, "command")


def test_retention_deletes_old_decisions_and_windows_and_keeps_the_baseline_and_state(tmp_path):
    from shared.monitoring import store
    from shared.tables.sqlite import SqliteTableService

    tables = SqliteTableService(str(tmp_path / "s.db"))
    old = store.record_decision(tables, "ep", {"verdict": "ok"}, now=1000.0)
    new = store.record_decision(tables, "ep", {"verdict": "ok"}, now=9000.0)
    store.save_window(tables, "ep", "2", 0.0, {"start": 0.0, "end": 1000.0})
    store.save_window(tables, "ep", "2", 8000.0, {"start": 8000.0, "end": 9000.0})
    store.freeze_baseline(tables, "ep", "2", {"version": "2"})
    assert store.take_action(tables, "ep", old["id"], now=1000.0, cooldown_seconds=0)
    assert store.delete_older(tables, "ep", older_than=5000.0, limit=100) == 2
    assert [e.data["id"] for e in store.decisions_page(tables, "ep", limit=10, continuation=None).entities] == [
        new["id"]]
    assert [w["start"] for w in store.windows(tables, "ep", "2")] == [8000.0]
    assert store.baseline(tables, "ep", "2") and store.state(tables, "ep")["last_decision"] == old["id"]


# ---------------------------------------------------------------------------------- listing order


def _listed(tables, endpoint: str, limit: int) -> list[dict]:
    """Every decision as ``GET /api/monitor`` lists them, page after page."""
    from handlers.deps import Deps
    from handlers.http_types import Request
    from handlers.operators import list_decisions

    deps = Deps(None, tables, None, lambda: None, lambda: None)  # the view reads the tables alone
    out, token = [], None
    while True:
        params = {"endpoint": endpoint, "limit": str(limit), **({"continuation": token} if token else {})}
        got = list_decisions(deps, Request("GET", b"", params=params))
        assert got.status == 200, got.payload
        out += got.payload["decisions"]
        token = got.payload["continuation"]
        if not token:
            return out


def test_decisions_written_concurrently_and_out_of_order_list_newest_first_by_at_then_id(tables):
    """Checks race: one that started earlier writes its decision later, one check writes a decision
    per version at the same time, and decisions fall in one millisecond. Written from four threads
    in a shuffled order, the API lists them, across pages, newest ``at`` first then by ``id``
    (``store.listing_order``), every one once."""
    import random
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    from shared.monitoring import store

    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    base = 1_765_000_000.0
    times = ([base + 60.0] * 3  # one check, three versions judged at once
             + [base + 30.0 + i * 0.0001 for i in range(8)]  # eight in one millisecond
             + [base + s for s in (0.0, 5.0, 12.5, 45.25)])
    random.Random(16).shuffle(times)  # the write order is not the time order

    def write(at: float) -> dict:
        return store.record_decision(tables, endpoint, {"verdict": "ok", "figures": []}, now=at)

    with ThreadPoolExecutor(4) as pool:
        written = list(pool.map(write, times))
    listed = _listed(tables, endpoint, limit=4)
    assert sorted(d["id"] for d in listed) == sorted(d["id"] for d in written)
    assert listed == sorted(listed, key=store.listing_order)
    assert [d["at"] for d in listed] == sorted((d["at"] for d in listed), reverse=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 999_999)), min_size=1, max_size=25), st.randoms())
def test_any_decision_times_in_any_write_order_list_in_listing_order(tmp_path, times, rnd):
    """Times drawn from a few milliseconds apart down to the same microsecond (and equal ones),
    written in a random order: the listing is ``store.listing_order``, ``at`` never increasing."""
    import uuid

    from shared.monitoring import store
    from shared.tables.sqlite import SqliteTableService

    tables, endpoint = SqliteTableService(str(tmp_path / "s.db")), f"ep-{uuid.uuid4().hex[:8]}"
    ats = [1_765_000_000 + ms / 1000 + us / 1e9 for ms, us in times]
    rnd.shuffle(ats)
    for at in ats:
        store.record_decision(tables, endpoint, {"verdict": "ok"}, now=at)
    listed = _listed(tables, endpoint, limit=7)
    assert len(listed) == len(ats) and listed == sorted(listed, key=store.listing_order)
    assert all(a["at"] >= b["at"] for a, b in itertools.pairwise(listed))


def test_a_binned_figure_reads_with_its_bound_an_exact_one_without():
    from shared.monitoring.figures import figure_text

    f = {"check": "ks(prediction)", "value": 0.1243, "threshold": 0.2, "direction": "above", "verdict": "ok"}
    assert figure_text(f) == "ks(prediction) 0.124 (alert > 0.2) ✔"
    assert figure_text({**f, "bound": 0.00049}) == "ks(prediction) 0.124 ±0.00049 (alert > 0.2) ✔"
    assert figure_text({**f, "bound": None}) == figure_text(f)
