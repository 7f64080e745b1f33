"""Smoke queries: does the endpoint answer the policy's records as the policy expects?"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.policy import SmokeQuery
from shared.serving import QueryResult


@dataclass(frozen=True)
class SmokeOutcome:
    name: str
    passed: bool
    latency_ms: float
    reason: str = ""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def judge(q: SmokeQuery, result: QueryResult) -> SmokeOutcome:
    e = q.expect

    def fail(reason: str) -> SmokeOutcome:
        return SmokeOutcome(q.name, False, result.latency_ms, reason)

    if not result.ok:
        return fail(f"query failed: {result.error}")
    preds = result.predictions
    if not isinstance(preds, list):
        return fail(f"'predictions' is {type(preds).__name__}, expected a list")
    want = len(q.records) if e.count is None else e.count
    if len(preds) != want:
        return fail(f"{len(preds)} predictions, expected {want}")
    # A one-column DataFrame comes back as records ({col: value}); judge the value.
    values = [next(iter(p.values())) if isinstance(p, dict) and len(p) == 1 else p for p in preds]
    if e.prediction_type == "number" and not all(_is_number(v) for v in values):
        return fail(f"predictions are not all numbers: {values[:5]}")
    if e.prediction_type == "string" and not all(isinstance(v, str) for v in values):
        return fail(f"predictions are not all strings: {values[:5]}")
    numbers = [v for v in values if _is_number(v)]
    if e.min is not None and any(v < e.min for v in numbers):
        return fail(f"a prediction is below {e.min}: {min(numbers)}")
    if e.max is not None and any(v > e.max for v in numbers):
        return fail(f"a prediction is above {e.max}: {max(numbers)}")
    if result.latency_ms > e.max_latency_ms:
        return fail(f"took {result.latency_ms:.0f} ms; the bound is {e.max_latency_ms:.0f} ms")
    return SmokeOutcome(q.name, True, result.latency_ms)


def run(queries: list[SmokeQuery], send: Callable[[list[dict[str, Any]]], QueryResult]) -> list[SmokeOutcome]:
    """Run every query (not stopping at the first failure, so the record shows them all)."""
    return [judge(q, send(q.records)) for q in queries]
