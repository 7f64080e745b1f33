"""p-values in pure Python, from the statistics the SQL returns (as
``scipy.stats.ks_2samp`` and ``chi2_contingency`` compute them, https://docs.scipy.org/doc/scipy/reference/stats.html).

- ``ks_pvalue(d, n, m)``: the two-sided two-sample Kolmogorov-Smirnov p-value P(D ≥ d) from the
  statistic and the two sample sizes only, as ``scipy.stats.ks_2samp`` computes it (scipy
  1.17.1, ``_stats_py.ks_2samp``, method ``auto``), which is

  * exact when max(n, m) <= 10 000 (scipy's ``MAX_AUTO_N``), with d rounded to the lattice of
    attainable values h / lcm(n, m): here the reflection-principle sum when n = m, and
    otherwise the probability that a random lattice path from (0, 0) to (n, m) stays strictly
    inside the band |i/n - j/m| < d, by dynamic programming on path fractions (each point
    holds paths-inside / all-paths, so nothing overflows). The programme costs about
    (min(n, m) + 1)·(2·d·max(n, m) + 1) steps; above ``EXACT_STEPS`` (about 0.2 s of pure
    Python on this project's machine) the asymptotic form below is used instead, where scipy
    would still be exact;
  * otherwise ``kstwo.sf(d, N)``, N = round(n·m/(n + m)), the one-sample distribution at the
    effective size. Here it is approximated by the Kolmogorov limit with Vrbik's small-sample
    correction (Vrbik 2018, "Small-sample corrections to Kolmogorov-Smirnov test statistic",
    Pioneer J. Theor. Appl. Statistics 15): P(√N·D >= z) ≈ Q(z + 1/(6√N) + (z - 1)/(4N)),
    Q(λ) = 2 Σ (-1)^(k-1) exp(-2k²λ²).

  Measured against scipy 1.17.1 (tests/test_drift_stats.py checks each bound):

  * exact paths: within 1e-12 absolute of scipy's exact p (1 - a probability near 1 in double
    precision: relative precision is lost below p ≈ 1e-13, as in scipy);
  * asymptotic form against ``kstwo.sf(d, N)`` (scipy's own rule above 10 000): within
    0.03 / N absolute (2.5e-3 at N = 10, 2.1e-5 at N = 1000, 4.5e-8 at N = 500 000); relative
    error within 1 % for p >= 1e-3 once N >= 300, larger in the far tail (p < 1e-6), where
    every threshold already says "different";
  * asymptotic form where scipy is exact but the programme would cost too much (both samples
    between about 1 000 and 10 000 and a large D): within 3e-3 absolute, largest for nearly
    equal sizes, whose exact distribution has coarse lattice steps.

  At large n the p-value says little anyway (Evidently issue #50,
  https://github.com/evidentlyai/evidently/issues/50): gate on D, W1 or PSI there.

- ``chi2_sf(x, dof)``: the chi-square survival function, the regularised upper incomplete
  gamma function Q(dof/2, x/2) by its series (x < a + 1) or its continued fraction (modified
  Lentz), to about 1e-14 relative.
"""

from __future__ import annotations

import math

EXACT_MAX_N = 10_000  # scipy's MAX_AUTO_N: exact when both samples are at most this large
EXACT_STEPS = 1_000_000  # lattice-path steps the exact two-sample p may cost (pure Python, ~0.2 s)
_EPS = 1e-16
_TINY = 1e-300


# ---------------------------------------------------------------------------------- KS
def ks_pvalue(d: float, n: int, m: int) -> float:
    """Two-sided P(D_{n,m} ≥ d) for samples of n and m values (see the module docstring)."""
    if n <= 0 or m <= 0:
        raise ValueError("the KS p-value needs two non-empty samples")
    if d <= 0:
        return 1.0
    if d >= 1:
        d = 1.0
    if max(n, m) <= EXACT_MAX_N:
        g = math.gcd(n, m)
        lcm = n // g * m
        h = round(d * lcm)  # D takes only the values h / lcm; rounding undoes float noise
        if h == 0:
            return 1.0
        if n == m:
            return _ks_equal_sizes(n, h)
        if (min(n, m) + 1) * (2 * h * g // min(n, m) + 1) <= EXACT_STEPS:
            return _ks_band(n, m, h)
    return _ks_asymptotic(d, round(n * m / (n + m)))


def _ks_equal_sizes(n: int, h: int) -> float:
    """P(D_{n,n} ≥ h/n) = 2 Σ_{k≥1} (-1)^(k-1) C(2n, n-kh) / C(2n, n) (reflection principle:
    the paths that touch i - j = ±kh). Each ratio follows from the one before by h factors."""
    total, ratio, k, j = 0.0, 1.0, 1, 0
    while k * h <= n:
        while j < k * h:
            ratio *= (n - j) / (n + 1 + j)
            j += 1
        total += ratio if k % 2 else -ratio
        k += 1
    return min(1.0, max(0.0, 2.0 * total))


def _ks_band(n: int, m: int, h: int) -> float:
    """1 - (fraction of lattice paths (0,0)→(n,m) with |i·(m/g) - j·(n/g)| < h at every point).

    The fraction at a point is A(i, j) = (i·A(i-1, j) + j·A(i, j-1)) / (i + j), because the
    paths reaching (i, j) are those reaching (i-1, j) and (i, j-1), and C(i+j-1, i-1) / C(i+j, i)
    = i / (i + j). Rows run over the shorter sample: (n + 1) rows of about 2·h·g/n + 1 points."""
    if n > m:
        n, m = m, n
    g = math.gcd(n, m)
    a, b = m // g, n // g  # the point (i, j) is at distance |i·a - j·b| / lcm from the diagonal
    lo, hi = 0, min(m, -(-h // b) - 1)
    row = [1.0] * (hi - lo + 1)  # i = 0: the one path along the j axis, while it stays inside
    for i in range(1, n + 1):
        new_lo = max(0, (i * a - h) // b + 1)
        new_hi = min(m, -(-(i * a + h) // b) - 1)
        if new_lo > new_hi:
            return 1.0
        new = [0.0] * (new_hi - new_lo + 1)
        left = 0.0
        for j in range(new_lo, new_hi + 1):
            up = row[j - lo] if lo <= j <= hi else 0.0
            left = (i * up + j * left) / (i + j)
            new[j - new_lo] = left
        row, lo, hi = new, new_lo, new_hi
    inside = row[m - lo] if lo <= m <= hi else 0.0
    return min(1.0, max(0.0, 1.0 - inside))


def _ks_asymptotic(d: float, en: int) -> float:
    """``kstwo.sf(d, en)`` by the corrected Kolmogorov limit (module docstring)."""
    root = math.sqrt(en)
    z = root * d
    return kolmogorov_sf(z + 1.0 / (6.0 * root) + (z - 1.0) / (4.0 * en))


def kolmogorov_sf(lam: float) -> float:
    """Q(λ) = P(K ≥ λ) of the Kolmogorov distribution (scipy ``kstwobign.sf``): the alternating
    series for λ ≥ 1, and 1 - the theta-function series of the CDF below (both converge in a
    few terms there)."""
    if lam <= 0.0:
        return 1.0
    if lam < 1.0:
        s = 0.0
        for k in range(1, 12):
            s += math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8.0 * lam * lam))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / lam * s))
    total = 0.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * lam * lam)
        total += term if k % 2 else -term
        if term < 1e-17 * total:
            break
    return min(1.0, max(0.0, 2.0 * total))


# ---------------------------------------------------------------------------------- chi-square
def chi2_sf(x: float, dof: int) -> float:
    """P(X ≥ x) for X ~ chi-square(dof): Q(dof/2, x/2) (scipy ``chi2.sf``)."""
    if dof <= 0:
        raise ValueError("chi-square needs at least one degree of freedom")
    if x <= 0.0:
        return 1.0
    return gamma_q(dof / 2.0, x / 2.0)


def gamma_q(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a)."""
    if x <= 0.0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # P(a, x) = x^a e^-x / Γ(a+1) · Σ_k x^k / ((a+1)…(a+k))
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _EPS:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_front)))
    # Q(a, x) = x^a e^-x / Γ(a) · 1/(x+1-a- 1·(1-a)/(x+3-a- 2·(2-a)/(x+5-a- …))), modified Lentz
    b = x + 1.0 - a
    c = 1.0 / _TINY
    dd = 1.0 / b
    h = dd
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        dd = an * dd + b
        dd = _TINY if abs(dd) < _TINY else dd
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        dd = 1.0 / dd
        delta = dd * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return min(1.0, max(0.0, math.exp(log_front) * h))
