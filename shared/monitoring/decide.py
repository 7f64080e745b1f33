"""From a window's figures to a verdict, and from the latest windows to a decision. Pure logic.

A figure (one check's value in one window) is:

- ``insufficient`` when its window has fewer than ``min_rows`` rows (labelled rows for
  performance and label figures): a small sample says little, and the KS or chi-square tests
  flag almost anything at tiny n (Evidently issue #509,
  https://github.com/evidentlyai/evidently/issues/509). Never a violation;
- ``pending`` when its labels are not due yet (the window ended less than ``labels.delay`` ago);
- ``violation`` past its threshold, or, hysteresis, past its clear threshold when the same
  check violated in the version's previous window (persistence before clearing);
- ``ok`` otherwise (``missing`` when there is no value, e.g. a constant column's KS p-value).

A window violates when every figure of some group violates (checks without a group are groups
of one): the dbdemos preset needs drift on both prediction and label, or both F1 and expected
loss (dbdemos ``08_drift_detection.py``, https://github.com/databricks-demos/dbdemos-notebooks). It is
``insufficient`` when no figure could be judged.

A decision over the latest M windows of the serving version: ``violation`` when at least N of
them violate and the newest does (mlops-stacks' rule: no retraining for a violation that is
over); then ``cooldown`` if the last action was less than the cooldown ago. The caller adds
``run_in_flight`` when the retraining job is already running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from shared.monitoring.policy import Check, Decision

OK, VIOLATION, INSUFFICIENT, PENDING, MISSING = "ok", "violation", "insufficient", "pending", "missing"
COOLDOWN, RUN_IN_FLIGHT, INSUFFICIENT_DATA = "cooldown", "run_in_flight", "insufficient_data"


@dataclass(frozen=True)
class Figure:
    check: str
    value: float | None
    threshold: float
    clear: float
    direction: str
    rows: int
    verdict: str
    group: str
    bound: float | None = None  # a binned figure: the exact value lies within this of ``value``

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(check: Check, value: float | None, rows: int, min_rows: int, *, was_violating: bool,
          pending: bool = False, label: str | None = None, bound: float | None = None) -> Figure:
    """``label``: the figure's name when one check yields several (``psi(trip_distance)``);
    ``bound``: a binned figure's error bound (``shared.drift.binned``), stated in the figure."""
    if pending:
        verdict = PENDING
    elif rows < min_rows:
        verdict = INSUFFICIENT
    elif value is None:
        verdict = MISSING
    else:
        v = abs(value) if check.absolute else value
        limit = check.clear_at if was_violating else check.threshold
        verdict = VIOLATION if (v > limit if check.bad_above else v < limit) else OK
    name = label or check.label
    return Figure(name, value, check.threshold, check.clear_at, "above" if check.bad_above else "below",
                  rows, verdict, check.group or name, bound)


def undecided(check: Check, value: float | None, bound: float | None) -> bool:
    """Whether some value within ``bound`` of ``value`` would get another verdict than
    ``value`` itself: the threshold or the clear threshold lies in [value - bound, value + bound]."""
    if value is None or not bound:
        return False
    lo, hi = value - bound, value + bound
    if check.absolute:
        lo, hi = (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), max(abs(lo), abs(hi))
    return any(lo <= limit <= hi for limit in (check.threshold, check.clear_at))


def window_verdict(figures: Sequence[Figure]) -> str:
    groups: dict[str, list[str]] = {}
    for f in figures:
        groups.setdefault(f.group, []).append(f.verdict)
    if any(all(v == VIOLATION for v in vs) for vs in groups.values()):
        return VIOLATION
    if figures and all(f.verdict in (INSUFFICIENT, PENDING, MISSING) for f in figures):
        # Too few rows now stays too few once the labels are in: only a window waiting for
        # nothing but its labels is pending.
        return INSUFFICIENT if any(f.verdict == INSUFFICIENT for f in figures) else PENDING
    return OK


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    violating: int
    looked_at: int


def decide(windows: Sequence[str], rule: Decision, *, now: float, last_action_at: float | None,
           cooldown_seconds: float) -> Verdict:
    """``windows``: the verdicts of the version's latest windows, oldest first."""
    latest = list(windows)[-rule.windows:]
    bad = sum(1 for v in latest if v == VIOLATION)
    if not latest or latest[-1] in (INSUFFICIENT, PENDING):
        what = latest[-1] if latest else "no window"
        return Verdict(INSUFFICIENT_DATA, f"the latest window is {what}", bad, len(latest))
    if latest[-1] != VIOLATION or bad < rule.violations:
        return Verdict(OK, f"{bad} of the last {len(latest)} window(s) violate; {rule.violations} needed, the "
                       "latest among them", bad, len(latest))
    if last_action_at is not None and now - last_action_at < cooldown_seconds:
        left = cooldown_seconds - (now - last_action_at)
        return Verdict(COOLDOWN, f"{bad} of the last {len(latest)} window(s) violate, but the last action was "
                       f"{now - last_action_at:.0f} s ago; cooldown {cooldown_seconds:.0f} s ({left:.0f} s left)",
                       bad, len(latest))
    return Verdict(VIOLATION, f"{bad} of the last {len(latest)} window(s) violate, the latest among them", bad,
                   len(latest))
