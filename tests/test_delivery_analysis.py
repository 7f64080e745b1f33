"""An analysis run with Argo Rollouts' semantics (``shared.delivery.analysis``; Argo Rollouts,
https://argoproj.github.io/argo-rollouts/features/analysis/, and ``analysis/analysis.go``): the limits with their
strict >, errors that do not count, the worst metric deciding the run, and by property that a
completed run or metric never changes again."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.delivery import stats
from shared.delivery.analysis import HISTORY, PHASES, Limits, assess, new_run, record, summary
from shared.delivery.stats import FAILED, INCONCLUSIVE, SUCCESSFUL, Verdict

RUNNING, ERROR = "Running", "Error"
COMPLETED = (SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR)
OUTCOME = {"S": SUCCESSFUL, "F": FAILED, "I": INCONCLUSIVE}


def verdict(phase: str, value: float = 0.5) -> Verdict:
    return Verdict(phase, value, f"{phase.lower()} at {value}", {"value": value})


def measured(run: dict[str, Any], metric: str, outcome: str, at: float) -> dict[str, Any]:
    """``outcome`` S, F or I is a verdict of that phase, E a query error."""
    if outcome == "E":
        return record(run, metric, None, "statement failed: timeout", at)
    return record(run, metric, verdict(OUTCOME[outcome], at), None, at)


def play(outcomes: str, limits: Limits, metric: str = "error_rate") -> dict[str, Any]:
    """Record the outcomes one by one, assessing after each, as the rollout does."""
    run = new_run([metric])
    for at, outcome in enumerate(outcomes):
        run = assess(measured(run, metric, outcome, float(at)), limits)
    return run


def test_new_run_is_json_and_running():
    run = new_run(["error_rate", "latency"])
    assert json.loads(json.dumps(run)) == run
    assert run["phase"] == RUNNING
    assert run["metrics"]["latency"] == {"count": 0, "successful": 0, "failed": 0, "inconclusive": 0, "error": 0,
                                         "consecutive_error": 0, "phase": RUNNING, "measurements": []}
    assert assess(run, Limits())["phase"] == RUNNING  # nothing measured yet
    for bad in ([], ["latency", "latency"]):
        with pytest.raises(ValueError):
            new_run(bad)


@pytest.mark.parametrize(("outcomes", "limits", "phase"), [
    ("S", Limits(), SUCCESSFUL),
    ("F", Limits(), FAILED),
    ("I", Limits(), INCONCLUSIVE),
    ("SS", Limits(count=3), RUNNING),
    ("SSS", Limits(count=3), SUCCESSFUL),
    # failureLimit 3 tolerates 3 failures and fails on the 4th (strict >)
    ("FFF", Limits(count=5, failure_limit=3), RUNNING),
    ("FFFF", Limits(count=5, failure_limit=3), FAILED),
    ("FFFS", Limits(count=4, failure_limit=3), SUCCESSFUL),
    # -1 disables the failure limit: the count completes the metric
    ("FFF", Limits(count=3, failure_limit=-1), SUCCESSFUL),
    ("SIS", Limits(count=3, inconclusive_limit=1), SUCCESSFUL),
    ("SII", Limits(count=3, inconclusive_limit=1), INCONCLUSIVE),
    # consecutiveErrorLimit 4 (Argo's default) tolerates 4 errors in a row and stops on the 5th
    ("EEEE", Limits(), RUNNING),
    ("EEEEE", Limits(), ERROR),
    ("EEEESEEEE", Limits(count=2), RUNNING),  # a judged measurement resets the streak
    ("EEEESEEEEE", Limits(count=2), ERROR),
    ("E", Limits(consecutive_error_limit=0), ERROR),
    # an error does not count: it is retried, the next judged measurement decides
    ("EEEES", Limits(), SUCCESSFUL),
    ("ES", Limits(count=2), RUNNING),
    ("ESES", Limits(count=2), SUCCESSFUL),
])
def test_limits(outcomes, limits, phase):
    m = play(outcomes, limits)["metrics"]["error_rate"]
    assert m["phase"] == phase
    judged = [o for o in outcomes if o != "E"]
    assert m["count"] == len(judged)
    assert (m["successful"], m["failed"], m["inconclusive"]) == tuple(judged.count(o) for o in "SFI")
    assert m["error"] == outcomes.count("E")
    assert m["consecutive_error"] == len(outcomes) - len(outcomes.rstrip("E"))


@pytest.mark.parametrize(("outcomes", "limits", "phase"), [
    ("FI", Limits(), INCONCLUSIVE),
    ("FE", Limits(consecutive_error_limit=0), ERROR),
    ("IE", Limits(consecutive_error_limit=0), ERROR),
])
def test_a_later_limit_overwrites_an_earlier_one(outcomes, limits, phase):
    """Both limits broken by the time of one assessment: Error over Inconclusive over Failed
    (``assessMetricFailureInconclusiveOrError`` checks them in that order and overwrites)."""
    run = new_run(["error_rate"])
    for at, outcome in enumerate(outcomes):
        run = measured(run, "error_rate", outcome, float(at))
    assert assess(run, limits)["metrics"]["error_rate"]["phase"] == phase


def two_metrics(a: str, b: str, limits: Limits) -> dict[str, Any]:
    run = new_run(["error_rate", "latency"])
    for metric, outcomes in (("error_rate", a), ("latency", b)):
        for at, outcome in enumerate(outcomes):
            run = measured(run, metric, outcome, float(at))
    return assess(run, limits)


@pytest.mark.parametrize(("a", "b", "error_limit", "phase"), [
    ("S", "S", 0, SUCCESSFUL),
    ("S", "I", 0, INCONCLUSIVE),
    ("I", "E", 0, ERROR),
    ("E", "F", 0, FAILED),
    ("F", "I", 0, FAILED),
    ("S", "", 0, RUNNING),  # latency not measured yet
    ("S", "EE", 4, RUNNING),  # latency retrying after errors
])
def test_the_worst_metric_decides_the_run(a, b, error_limit, phase):
    run = two_metrics(a, b, Limits(consecutive_error_limit=error_limit))
    assert run["phase"] == phase
    assert run["phase"] in PHASES


@pytest.mark.parametrize("bad", ["F", "I", "E"])
def test_a_failed_error_or_inconclusive_metric_ends_the_run_at_once(bad):
    """Argo's terminating run (``IsTerminating``): the verdict cannot get better, so a metric still
    running does not hold it back."""
    run = two_metrics(bad, "", Limits(consecutive_error_limit=0))
    assert run["phase"] == {"F": FAILED, "I": INCONCLUSIVE, "E": ERROR}[bad]
    assert run["metrics"]["latency"]["phase"] == RUNNING  # not measured, and not called Successful
    assert record(run, "latency", verdict(SUCCESSFUL), None, 9.0) == run  # a completed run takes no more


def test_a_completed_run_keeps_its_phase_under_other_limits():
    run = two_metrics("I", "E", Limits())  # latency retrying (1 error of 4 tolerated) when error_rate ends the run
    assert (run["phase"], run["metrics"]["latency"]["phase"]) == (INCONCLUSIVE, RUNNING)
    assert assess(run, Limits(consecutive_error_limit=0)) == run


def test_a_completed_metric_takes_no_more_measurements():
    run = play("F", Limits(count=1), metric="error_rate")
    again = assess(measured(run, "error_rate", "S", 5.0), Limits(count=1))
    assert again == run and again["metrics"]["error_rate"]["phase"] == FAILED
    # within a running run, too: error_rate Successful while latency is still retrying
    run = assess(measured(measured(new_run(["error_rate", "latency"]), "error_rate", "S", 0.0), "latency", "E", 0.0),
                 Limits())
    assert run["phase"] == RUNNING and run["metrics"]["error_rate"]["phase"] == SUCCESSFUL
    assert measured(run, "error_rate", "F", 1.0)["metrics"]["error_rate"] == run["metrics"]["error_rate"]
    # nor does a policy changed mid-run reopen it (Argo: a completed MetricResult keeps its phase)
    assert assess(run, Limits(count=3))["metrics"]["error_rate"]["phase"] == SUCCESSFUL


def test_record_keeps_the_last_measurements_and_short_details():
    run = new_run(["latency"])
    for at in range(25):
        run = record(run, "latency", None, "x" * 5000, float(at))
    m = run["metrics"]["latency"]
    assert len(m["measurements"]) == HISTORY
    assert [e["at"] for e in m["measurements"]] == [float(at) for at in range(25 - HISTORY, 25)]
    assert all(len(e["detail"]) <= 300 and e["detail"].endswith("…") for e in m["measurements"])
    last = m["measurements"][-1]
    assert set(last) == {"at", "phase", "value", "detail"} and (last["phase"], last["value"]) == (ERROR, None)
    assert (m["error"], m["consecutive_error"], m["count"]) == (25, 25, 0)


def test_record_and_assess_leave_their_input_alone():
    run = new_run(["error_rate"])
    before = copy.deepcopy(run)
    after = assess(record(run, "error_rate", verdict(FAILED), None, 1.0), Limits())
    assert run == before and after["phase"] == FAILED


def test_record_rejects_what_is_not_one_measurement():
    run = new_run(["error_rate"])
    with pytest.raises(ValueError):
        record(run, "error_rate", None, None, 0.0)
    with pytest.raises(ValueError):
        record(run, "error_rate", verdict(SUCCESSFUL), "and an error", 0.0)
    with pytest.raises(ValueError):
        record(run, "latency", verdict(SUCCESSFUL), None, 0.0)
    with pytest.raises(ValueError):
        record(run, "error_rate", verdict("Running"), None, 0.0)
    with pytest.raises(ValueError):
        Limits(count=0)
    with pytest.raises(ValueError):
        Limits(failure_limit=-2)


def test_summary_of_real_verdicts():
    run = new_run(["error_rate", "latency", "prediction_shift"])
    run = record(run, "error_rate", stats.error_rate(30, 100, 10, 1000, margin=0.01, alpha=0.05, min_requests=100),
                 None, 1.0)
    run = record(run, "latency", stats.latency(190.0, 180.0, 100, 1000, max_ratio=1.5, min_samples=100), None, 1.0)
    run = assess(run, Limits())
    assert summary(run) == (
        "Failed: error_rate Failed (error rate 30.0% (30/100) vs 1.0% (10/1000): diff +29.0 pp, 95% lower +22.0 pp "
        f"> margin 1.0 pp); latency Successful (p95 190 ms vs 180 ms: 1.06{stats.TIMES} ≤ max "
        f"1.5{stats.TIMES}); prediction_shift Running (no measurement)")
    assert json.loads(json.dumps(run, allow_nan=False)) == run
    # An Inconclusive measurement keeps, whole, the requests a step needs for a verdict: at a 10%
    # step with the champion at 1.9%, 816, far above the default minimum of 100.
    quiet = record(new_run(["error_rate"]), "error_rate", stats.error_rate(
        2, 80, 14, 720, margin=0.01, alpha=0.05, min_requests=100), None, 1.0)
    assert summary(assess(quiet, Limits())) == (
        "Inconclusive: error_rate Inconclusive (candidate n=80 < 100 requests; "
        "a candidate at the champion's rate passes from 816 requests)")


events = st.lists(st.tuples(st.sampled_from(["error_rate", "latency"]), st.sampled_from("SFIE")), max_size=40)
limits = st.builds(Limits, count=st.integers(1, 5), failure_limit=st.integers(-1, 3),
                   inconclusive_limit=st.integers(0, 3), consecutive_error_limit=st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(events, limits)
def test_a_completed_run_or_metric_never_changes_again(sequence, lim):
    run = new_run(["error_rate", "latency"])
    run_done: dict[str, Any] | None = None
    metric_done: dict[str, dict[str, Any]] = {}
    for at, (metric, outcome) in enumerate(sequence):
        run = assess(measured(run, metric, outcome, float(at)), lim)
        if run_done is not None:
            assert run == run_done
        elif run["phase"] in COMPLETED:
            run_done = run
        for name, m in run["metrics"].items():
            if name in metric_done:
                assert m == metric_done[name]
            elif m["phase"] in COMPLETED:
                metric_done[name] = m
            assert m["count"] == m["successful"] + m["failed"] + m["inconclusive"]
            assert m["consecutive_error"] <= m["error"] and len(m["measurements"]) <= HISTORY
        if run["phase"] == RUNNING:
            assert all(m["phase"] not in ("Failed", "Error", "Inconclusive") for m in run["metrics"].values())
            assert any(m["phase"] == RUNNING for m in run["metrics"].values())
    assert json.loads(json.dumps(run, allow_nan=False)) == run
