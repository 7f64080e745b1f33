"""An analysis run: the measurements of each metric and the phase they add up to, with Argo
Rollouts' semantics (Argo Rollouts, "Analysis & Progressive Delivery", https://argoproj.github.io/argo-rollouts/features/analysis/;
``analysis/analysis.go`` in https://github.com/argoproj/argo-rollouts). Pure: the run is a small
JSON-able dict the rollout stores.

- Counting (``runMeasurements``, l.385-407): a Successful, Failed or Inconclusive measurement
  does ``count += 1`` and resets ``consecutive_error``; an error (the query failed) does
  ``error += 1``, ``consecutive_error += 1`` and does not count, so an errored measurement is
  retried rather than judged.
- A metric's phase (``assessMetricStatus`` and ``assessMetricFailureInconclusiveOrError``,
  l.579-689): ``failed > failure_limit`` (unless -1) is Failed, ``inconclusive >
  inconclusive_limit`` Inconclusive, ``consecutive_error > consecutive_error_limit`` Error, each
  strict and each later check overwriting an earlier one; otherwise Successful once ``count``
  measurements were judged, else Running. A completed metric keeps its phase and takes no more
  measurements (``generateMetricTasks`` skips it).
- The run's phase (``assessRunStatus``, l.436-573, with ``IsTerminating``): Running while a
  metric is Running, then the worst metric phase, Successful < Inconclusive < Error < Failed
  (``utils/analysis/helpers.go`` ``analysisStatusOrder``). A Failed, Error or Inconclusive metric
  ends the run at once, as Argo's terminating run does: the metrics still running do not hold
  back a verdict that can only stay as bad or get worse. A completed run takes no more
  measurements.
- Each metric keeps its last ``HISTORY`` measurements (``DefaultMeasurementHistoryLimit``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from shared.delivery.stats import FAILED, INCONCLUSIVE, SUCCESSFUL, Verdict

PHASES = ("Pending", "Running", "Successful", "Failed", "Inconclusive", "Error")
RUNNING, ERROR = "Running", "Error"
COMPLETED = (SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR)
WORST = (SUCCESSFUL, INCONCLUSIVE, ERROR, FAILED)  # Argo's analysisStatusOrder, completed phases only
TERMINATING = (FAILED, ERROR, INCONCLUSIVE)  # Argo's IsTerminating
HISTORY = 10
DETAIL_CHARS = 300  # a measurement's stored detail (an error text can be a whole SQL error)
_COUNTER = {SUCCESSFUL: "successful", FAILED: "failed", INCONCLUSIVE: "inconclusive"}


@dataclass(frozen=True)
class Limits:
    """A metric's limits, Argo's ``Metric`` fields with their defaults (``analysis_types.go``)."""

    count: int = 1  # measurements per metric in one run
    failure_limit: int = 0  # -1 disables
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4

    def __post_init__(self) -> None:
        if self.count < 1 or self.failure_limit < -1 or self.inconclusive_limit < 0 or self.consecutive_error_limit < 0:
            raise ValueError(f"invalid analysis limits: {self}")


def new_run(metrics: list[str]) -> dict[str, Any]:
    """A run of these metrics, Running, nothing measured."""
    if not metrics or len(set(metrics)) != len(metrics):
        raise ValueError(f"a run needs distinct metrics, not {metrics}")
    return {"phase": RUNNING, "metrics": {name: {
        "count": 0, "successful": 0, "failed": 0, "inconclusive": 0, "error": 0, "consecutive_error": 0,
        "phase": RUNNING, "measurements": [],
    } for name in metrics}}


def record(run: dict[str, Any], metric: str, verdict: Verdict | None, error: str | None, at: float) -> dict[str, Any]:
    """The run with one more measurement of ``metric``: a ``verdict``, or the ``error`` that kept
    the query from giving one. A completed run or metric takes none (returned unchanged)."""
    if (verdict is None) == (error is None):
        raise ValueError("a measurement is either a verdict or an error")
    if metric not in run["metrics"]:
        raise ValueError(f"the run has no metric {metric!r}: {sorted(run['metrics'])}")
    new = copy.deepcopy(run)
    m = new["metrics"][metric]
    if run["phase"] in COMPLETED or m["phase"] in COMPLETED:
        return new
    if verdict is not None:
        if verdict.phase not in _COUNTER:
            raise ValueError(f"a verdict is Successful, Failed or Inconclusive, not {verdict.phase!r}")
        m[_COUNTER[verdict.phase]] += 1
        m["count"] += 1
        m["consecutive_error"] = 0
        entry = {"at": at, "phase": verdict.phase, "value": verdict.value, "detail": _clip(verdict.detail)}
    else:
        m["error"] += 1
        m["consecutive_error"] += 1
        entry = {"at": at, "phase": ERROR, "value": None, "detail": _clip(str(error))}
    m["measurements"] = [*m["measurements"], entry][-HISTORY:]
    return new


def assess(run: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The run with each metric's phase and the run's phase assessed (module docstring)."""
    new = copy.deepcopy(run)
    if new["phase"] in COMPLETED:
        return new
    for m in new["metrics"].values():
        if m["phase"] not in COMPLETED:
            m["phase"] = _metric_phase(m, limits)
    phases = [m["phase"] for m in new["metrics"].values()]
    done = [p for p in phases if p in COMPLETED]
    if len(done) == len(phases) or any(p in TERMINATING for p in done):
        new["phase"] = max(done, key=WORST.index)
    return new


def summary(run: dict[str, Any]) -> str:
    """One line: the run's phase, then each metric's phase and its last measurement's detail."""
    parts = []
    for name, m in run["metrics"].items():
        last = m["measurements"][-1]["detail"] if m["measurements"] else "no measurement"
        parts.append(f"{name} {m['phase']} ({last})")
    return f"{run['phase']}: {'; '.join(parts)}"


def _metric_phase(m: dict[str, Any], limits: Limits) -> str:
    phase = None
    if limits.failure_limit >= 0 and m["failed"] > limits.failure_limit:
        phase = FAILED
    if m["inconclusive"] > limits.inconclusive_limit:
        phase = INCONCLUSIVE
    if m["consecutive_error"] > limits.consecutive_error_limit:
        phase = ERROR
    if phase is not None:
        return phase
    return SUCCESSFUL if m["count"] >= limits.count else RUNNING


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 1] + "…"
