"""One measurement of a step: the figures of both arms over the step's window, judged per metric
by the policy's checks (``shared.delivery.stats``)."""

from __future__ import annotations

from shared.delivery import stats
from shared.delivery.measure import Figures
from shared.delivery.policy import Analysis


def verdicts(figures: Figures, policy: Analysis) -> dict[str, stats.Verdict]:
    cand, champ = figures.candidate, figures.champion
    out: dict[str, stats.Verdict] = {}
    if policy.error_rate is not None:
        out["error_rate"] = stats.error_rate(cand.server_errors, cand.requests, champ.server_errors, champ.requests,
                                             margin=policy.error_rate.margin, alpha=policy.error_rate.alpha,
                                             min_requests=policy.min_requests)
    if policy.latency is not None:
        out["latency"] = stats.latency(cand.p95_ms, champ.p95_ms, cand.requests, champ.requests,
                                       max_ratio=policy.latency.max_ratio, min_samples=policy.min_requests)
    if policy.prediction_shift is not None:
        shift = policy.prediction_shift
        value = figures.psi if shift.metric == "psi" else figures.ks
        out["prediction_shift"] = stats.prediction_shift(shift.metric, value, shift.threshold, cand.predictions,
                                                         champ.predictions, min_samples=policy.min_requests)
    return out
