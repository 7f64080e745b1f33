"""The statistics of one analysis measurement: the candidate against the champion over the same
window, one ``Verdict`` per metric. Pure Python: the inputs
are the few aggregates the analysis query returns (counts, p95s, an effect size).

- Error rate: one-sided non-inferiority of p_candidate - p_champion against a margin δ (as
  statsmodels' ``test_proportions_2indep(..., alternative='larger')``,
  https://www.statsmodels.org/stable/generated/statsmodels.stats.proportion.test_proportions_2indep.html):
  Successful when the upper bound is below δ, Failed only when the lower bound is above it (worse
  than δ with the stated confidence; a straddled margin is Inconclusive, as Argo Rollouts' grey
  zone, https://argoproj.github.io/argo-rollouts/features/analysis/), judged on Newcombe's hybrid score
  interval for the difference of two independent
  proportions (Newcombe 1998, "Interval estimation for the difference between independent
  proportions: comparison of eleven methods", Statistics in Medicine 17:873-890, method 10), built
  from the Wilson score interval of each proportion (Wilson 1927, "Probable inference, the law of
  succession, and statistical inference", JASA 22:209-212). The one-sided 1 - alpha bounds are
  the bounds of the two-sided interval at 1 - 2·alpha. Newcombe's interval keeps its coverage
  where the Wald interval fails: rates near 0 and small counts, the usual case of a canary.
- Latency: a guardrail on the ratio of the two p95s, Inconclusive below a sample minimum
  since a p95 of few samples is unstable.
- Prediction shift: an effect size (PSI or KS D) against a threshold, never a p-value,
  which large samples make tiny for any shift.

Too little traffic in either arm is Inconclusive, never Successful or Failed, so a quiet
canary pauses for an operator instead of passing or rolling back on no evidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

SUCCESSFUL, FAILED, INCONCLUSIVE = "Successful", "Failed", "Inconclusive"
LATENCY_FLOOR_MS = 1.0  # below 1 ms a p95 is timer noise: both p95s are floored here before the ratio
SHIFT_LABELS = {"psi": "PSI", "ks": "KS D"}
TIMES = "\u00d7"  # the multiplication sign of a ratio in a detail, escaped: ruff (RUF001) takes it for an x


@dataclass(frozen=True)
class Verdict:
    """One measurement of one metric: its phase, the headline figure, one line for operators and
    every figure measured (JSON-able: ints, rounded floats, None for undefined values)."""

    phase: str
    value: float | None
    detail: str
    figures: dict[str, float | int | None]


def wilson(count: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson score interval for a proportion count/n at normal quantile ``z`` (Wilson 1927;
    Newcombe 1998 "Two-sided confidence intervals for the single proportion", method 3):
    (2x + z² ∓ z·sqrt(z² + 4x(n - x)/n)) / (2(n + z²)). A fractional count (an expected one, as in
    ``requests_to_pass``) is taken as it is: the formula is continuous in x and n."""
    if n <= 0 or not 0 <= count <= n:
        raise ValueError(f"a proportion needs 0 <= count <= n and n > 0, not {count}/{n}")
    if z <= 0:
        raise ValueError(f"z must be positive, not {z}")
    centre = 2 * count + z * z
    spread = z * math.sqrt(z * z + 4 * count * (n - count) / n)
    denominator = 2 * (n + z * z)
    lower = max(0.0, (centre - spread) / denominator)
    # for count == n the sum rounds to 1 - 1 ulp about a quarter of the time: the exact end instead
    upper = 1.0 if count == n else min(1.0, (centre + spread) / denominator)
    return lower, upper


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float) -> tuple[float, float]:
    """Two-sided ``confidence`` interval for p1 - p2 (p1 = x1/n1, p2 = x2/n2), Newcombe's hybrid
    score interval (Newcombe 1998, method 10; statsmodels ``confint_proportions_2indep`` method
    ``newcomb``): with (l_i, u_i) the Wilson intervals at the same level,
    lower = p1 - p2 - sqrt((p1 - l1)² + (u2 - p2)²), upper = p1 - p2 + sqrt((u1 - p1)² + (p2 - l2)²)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    p1, p2 = x1 / n1, x2 / n2
    diff = p1 - p2
    lower = diff - math.hypot(p1 - l1, u2 - p2)
    upper = diff + math.hypot(u1 - p1, p2 - l2)
    return max(-1.0, lower), min(1.0, upper)


def cohens_h(p1: float, p2: float) -> float:
    """Cohen's h, the effect size of two proportions: 2·asin(√p1) - 2·asin(√p2) (Cohen 1988,
    "Statistical Power Analysis for the Behavioral Sciences", §6.2; 0.2 small, 0.5 medium)."""
    for p in (p1, p2):
        if not 0 <= p <= 1:
            raise ValueError(f"a proportion must be in [0, 1], not {p}")
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def error_rate(cand_errors: int, cand_n: int, champ_errors: int, champ_n: int, *, margin: float, alpha: float,
               min_requests: int) -> Verdict:
    """Non-inferiority of the candidate's error rate on the one-sided 1 - alpha Newcombe
    bounds of d = p_candidate - p_champion (the two-sided interval at 1 - 2·alpha):

    - fewer than ``min_requests`` in either arm: Inconclusive;
    - upper bound < ``margin``: Successful (no worse than the margin allows, with confidence 1 - alpha);
    - lower bound > ``margin``: Failed (worse than the margin allows, with confidence 1 - alpha), so
      a candidate exactly at the margin is rolled back in about alpha of the measurements and an
      equal one in far fewer;
    - otherwise Inconclusive (the interval straddles the margin).

    ``value`` is the candidate's error rate; ``figures["pass_n"]`` the candidate requests with which
    a candidate erring at the champion's rate would pass (``requests_to_pass``, at this step's
    champion/candidate ratio), also named in an Inconclusive detail so a step can be sized."""
    for errors, n in ((cand_errors, cand_n), (champ_errors, champ_n)):
        if not 0 <= errors <= n:
            raise ValueError(f"error counts need 0 <= errors <= requests, not {errors}/{n}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), not {alpha}")
    few = _too_few(cand_n, champ_n, min_requests, "requests")
    figures: dict[str, float | int | None] = {
        "cand_errors": cand_errors, "cand_n": cand_n, "champ_errors": champ_errors, "champ_n": champ_n,
        "cand_rate": _rounded(cand_errors / cand_n) if cand_n else None,
        "champ_rate": _rounded(champ_errors / champ_n) if champ_n else None,
        "diff": None, "lower": None, "upper": None, "ratio": None, "cohens_h": None,
        "margin": margin, "alpha": alpha, "min_requests": min_requests, "pass_n": None,
    }
    if not cand_n or not champ_n:  # nothing to estimate (and _too_few always reports an empty arm)
        return Verdict(INCONCLUSIVE, figures["cand_rate"], few, figures)
    cand_rate, champ_rate = cand_errors / cand_n, champ_errors / champ_n
    pass_n = requests_to_pass(champ_rate, margin, alpha, champion_per_candidate=champ_n / cand_n)
    needs = f"; a candidate at the champion's rate passes from {pass_n} requests"
    diff = cand_rate - champ_rate
    lower, upper = newcombe_difference(cand_errors, cand_n, champ_errors, champ_n, 1 - 2 * alpha)
    figures.update(diff=_rounded(diff), lower=_rounded(lower), upper=_rounded(upper),
                   ratio=_rounded(cand_rate / champ_rate, 4) if champ_rate else None,
                   cohens_h=_rounded(cohens_h(cand_rate, champ_rate), 4), pass_n=pass_n)
    if few:  # the figures stay in the record, but a verdict needs the minimum in both arms
        return Verdict(INCONCLUSIVE, _rounded(cand_rate), few + needs, figures)
    level = f"{100 * (1 - alpha):g}%"
    head = (f"error rate {_pct(cand_rate)} ({cand_errors}/{cand_n}) vs {_pct(champ_rate)} "
            f"({champ_errors}/{champ_n}): diff {_pp(diff, signed=True)}")
    if upper < margin:
        phase, tail = SUCCESSFUL, f"{level} upper {_pp(upper, signed=True)} < margin {_pp(margin)}"
    elif lower > margin:
        phase, tail = FAILED, f"{level} lower {_pp(lower, signed=True)} > margin {_pp(margin)}"
    else:
        phase = INCONCLUSIVE
        tail = (f"{level} bounds {_pp(lower, signed=True)} to {_pp(upper, signed=True)}, margin {_pp(margin)}"
                f"{needs}")
    return Verdict(phase, _rounded(cand_rate), f"{head}, {tail}", figures)


def requests_to_pass(rate: float, margin: float, alpha: float, *, champion_per_candidate: float = 1.0) -> int:
    """The fewest candidate requests n with which a candidate erring at ``rate``, beside a champion
    erring at the same ``rate`` over ``champion_per_candidate``·n requests, is Successful: the
    smallest n whose one-sided 1 - alpha Newcombe upper bound of d (``error_rate``'s bound, taken
    at the expected counts rate·n) is below ``margin``. Exact for the interval ``error_rate``
    judges on, not a normal approximation; at ``rate`` 0 it is the smallest n above
    z²(1 - δ)/δ (Wilson's bound on 0/n; 268 for δ 1 pp, alpha 0.05, about the rule of three). A
    candidate worse than the champion needs more, and one that errs more than ``margin`` above it
    never passes. The bound falls as n grows (the tests check the n found is the boundary), so a
    doubling then a bisection finds n in O(log n) steps."""
    if not 0 <= rate <= 1 or not 0 < margin < 1 or not 0 < alpha < 0.5 or not champion_per_candidate > 0:
        raise ValueError(f"no sample size for rate {rate}, margin {margin}, alpha {alpha}, "
                         f"champion/candidate {champion_per_candidate}")
    z = NormalDist().inv_cdf(1 - alpha)

    def passes(n: int) -> bool:
        champ_n = champion_per_candidate * n
        upper_cand = wilson(rate * n, n, z)[1]
        lower_champ = wilson(rate * champ_n, champ_n, z)[0]
        return math.hypot(upper_cand - rate, rate - lower_champ) < margin

    fails, high = 0, 1
    while not passes(high):
        fails, high = high, 2 * high
    while high - fails > 1:
        middle = (fails + high) // 2
        fails, high = (fails, middle) if passes(middle) else (middle, high)
    return high


def latency(cand_p95: float | None, champ_p95: float | None, cand_n: int, champ_n: int, *, max_ratio: float,
            min_samples: int) -> Verdict:
    """The p95 guardrail: Failed when the candidate's p95 is more than ``max_ratio`` times
    the champion's; Inconclusive with fewer than ``min_samples`` in either arm or a missing p95.
    Both p95s are floored at 1 ms (``LATENCY_FLOOR_MS``) so a champion answering in ~0 ms does not
    turn timer noise into an infinite ratio. ``value`` is the ratio."""
    cand_p95, champ_p95 = _finite(cand_p95), _finite(champ_p95)
    for p95 in (cand_p95, champ_p95):
        if p95 is not None and p95 < 0:
            raise ValueError(f"a latency cannot be negative: {p95}")
    few = _too_few(cand_n, champ_n, min_samples, "samples")
    figures: dict[str, float | int | None] = {
        "cand_p95_ms": _rounded(cand_p95, 3), "champ_p95_ms": _rounded(champ_p95, 3), "ratio": None,
        "max_ratio": max_ratio, "cand_n": cand_n, "champ_n": champ_n, "min_samples": min_samples,
    }
    if cand_p95 is None or champ_p95 is None:
        missing = " and the ".join(arm for arm, p95 in (("candidate", cand_p95), ("champion", champ_p95))
                                   if p95 is None)
        return Verdict(INCONCLUSIVE, None, few or f"no p95 for the {missing}", figures)
    ratio = max(cand_p95, LATENCY_FLOOR_MS) / max(champ_p95, LATENCY_FLOOR_MS)
    figures["ratio"] = _rounded(ratio, 4)
    if few:
        return Verdict(INCONCLUSIVE, figures["ratio"], few, figures)
    floor = f" (floor {LATENCY_FLOOR_MS:g} ms)" if min(cand_p95, champ_p95) < LATENCY_FLOOR_MS else ""
    head = f"p95 {_ms(cand_p95)} vs {_ms(champ_p95)}{floor}: {ratio:.2f}{TIMES}"
    if ratio > max_ratio:
        return Verdict(FAILED, figures["ratio"], f"{head} > max {max_ratio:g}{TIMES}", figures)
    return Verdict(SUCCESSFUL, figures["ratio"], f"{head} ≤ max {max_ratio:g}{TIMES}", figures)


def prediction_shift(metric: str, value: float | None, threshold: float, cand_n: int, champ_n: int, *,
                     min_samples: int) -> Verdict:
    """The candidate's predictions against the champion's over the same window: Failed when
    the effect size ``value`` (``metric`` "psi" or "ks", the KS D) is above ``threshold``;
    Inconclusive with fewer than ``min_samples`` predictions in either arm or no value."""
    if metric not in SHIFT_LABELS:
        raise ValueError(f"a prediction shift is one of {sorted(SHIFT_LABELS)}, not {metric!r}")
    label, value = SHIFT_LABELS[metric], _finite(value)
    figures: dict[str, float | int | None] = {
        metric: _rounded(value), "threshold": threshold, "cand_n": cand_n, "champ_n": champ_n,
        "min_samples": min_samples,
    }
    few = _too_few(cand_n, champ_n, min_samples, "predictions")
    if few or value is None:
        return Verdict(INCONCLUSIVE, _rounded(value), few or f"no {label} value", figures)
    tail = f"threshold {threshold:g} ({cand_n} vs {champ_n} predictions)"
    if value > threshold:
        return Verdict(FAILED, _rounded(value), f"{label} {value:.3f} > {tail}", figures)
    return Verdict(SUCCESSFUL, _rounded(value), f"{label} {value:.3f} ≤ {tail}", figures)


def _too_few(cand_n: int, champ_n: int, minimum: int, unit: str) -> str:
    """The reason a measurement is Inconclusive for lack of data, or "" when both arms have enough.
    An empty arm is always too few, even with a minimum of 0: nothing can be estimated from it."""
    short = [f"{arm} n={n}" for arm, n in (("candidate", cand_n), ("champion", champ_n)) if n < max(minimum, 1)]
    return f"{', '.join(short)} < {max(minimum, 1)} {unit}" if short else ""


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _rounded(x: float | None, digits: int = 6) -> float | None:
    """A JSON-able figure: None for a missing or non-finite value (never NaN or inf)."""
    x = _finite(x)
    return None if x is None else round(x, digits)


def _hundredths(x: float, unit: str, signed: bool = False) -> str:
    """A fraction in percent (or percentage points): two decimals below 1 so small rates stay visible."""
    v = 100 * x
    digits = 1 if abs(v) >= 1 or v == 0 else 2
    return f"{v:+.{digits}f}{unit}" if signed else f"{v:.{digits}f}{unit}"


def _pct(p: float) -> str:
    return _hundredths(p, "%")


def _pp(d: float, signed: bool = False) -> str:
    return _hundredths(d, " pp", signed)


def _ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"
