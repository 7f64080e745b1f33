"""The three drift checks ``bench/drift.py`` compares, each run alone in a fresh process so that
its peak memory (``VmHWM``) is the check's own:

- ``app``: this product. The process holds what the app would: databricks-sdk, the Statement
  Execution client (``shared.statements``) and ``shared.drift``; it freezes the baseline with
  ``baseline_sql`` (once per model version in the app), then, with ``mode`` ``exact``, runs
  ``drift_sql`` on the local workspace's warehouse (DuckDB, another process) and computes the
  metrics from the aggregate rows (``drift_metrics``); with ``mode`` ``binned``, runs
  ``binned_sql`` (``shared.drift.binned``: one grouped scan) and then ``drift_sql`` for the
  numeric columns whose verdict (``verdict_w1`` on W1/std, KS p at ``verdict_p``) the binned
  bound leaves open, as the monitor does (``shared.monitoring.check``);
- ``evidently``: Evidently 0.7 ``Report([DataDriftPreset()])`` on pandas frames read from
  Parquet (its own virtual environment; this module imports nothing at the top level beyond
  the standard library, so that environment needs only Evidently);
- ``scipy``: the same statistics exactly on the raw values with numpy/scipy (``ks_2samp``,
  ``wasserstein_distance``, ``jensenshannon``, ``chi2_contingency``) on the same frames.

    python -m bench.drift_methods METHOD 'JSON arguments'

prints one JSON line: seconds per phase, peak RSS after the imports and at the end (MiB), CPU
seconds, and per column the figures the verdicts are made from.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from typing import Any


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak resident memory of a process (this one by default): VmHWM, which starts afresh at exec
    (ru_maxrss would carry the parent's resident size at fork over, getrusage(2) "preserved across
    execve")."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _number(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ---------------------------------------------------------------------------------- this product
def app(args: dict[str, Any]) -> dict[str, Any]:
    from databricks.sdk import WorkspaceClient

    from shared import drift, statements

    imported = peak_rss_mib()
    w = WorkspaceClient(host=args["host"], token=args["token"])
    cols = [drift.Column(n, "numeric") for n in args["numeric"]] + \
        [drift.Column(n, "categorical") for n in args["categorical"]]

    def run(statement: str) -> list[list[Any]]:
        cursor: dict[str, Any] = {}
        while True:
            try:
                result = statements.run(w, args["warehouse"], statement, cursor, "bench", time.monotonic() + 60)
            except statements.StatementPending:
                time.sleep(0.02)  # stands in for the queue's next message, which polls the statement
                continue
            return statements.rows(w, result)

    t0 = time.perf_counter()
    frozen = drift.freeze(run(drift.baseline_sql(args["reference"], cols)), cols)
    baseline_s = time.perf_counter() - t0
    # Untimed: every column of the current relation once, so both sides' files have been read
    # (the freeze read the reference's) and no mode pays for a cold cache.
    counts = ", ".join(f"count({statements.quote_ident(c.name)})" for c in cols)
    run(f"SELECT {counts} FROM {args['current']} AS w")
    t1 = time.perf_counter()
    exact: list[Any] = []
    if args.get("mode", "exact") == "exact":
        rows = run(drift.drift_sql(args["reference"], args["current"], cols, frozen))
        t2 = time.perf_counter()
        metrics = drift.drift_metrics(rows, cols, frozen)
    else:
        from shared.drift import binned
        from shared.drift.pvalues import ks_pvalue

        rows = run(binned.binned_sql(args["reference"], args["current"], cols, frozen))
        t2 = time.perf_counter()
        metrics = binned.binned_metrics(rows, cols, frozen)

        def open_verdict(m: Any) -> bool:
            w1, wb = m.wasserstein_norm, m.wasserstein_norm_bound or 0.0
            p_lo, p_hi = ks_pvalue(m.ks_d + m.ks_bound, m.n_ref, m.n_cur), ks_pvalue(max(0.0, m.ks_d - m.ks_bound),
                                                                                      m.n_ref, m.n_cur)
            return (w1 is not None and w1 - wb <= args["verdict_w1"] <= w1 + wb) or p_lo <= args["verdict_p"] <= p_hi

        exact = [c for c in cols if isinstance(metrics[c.name], binned.BinnedDrift) and metrics[c.name].ks_d is not None
                 and open_verdict(metrics[c.name])]
        if exact:
            metrics |= drift.drift_metrics(run(drift.drift_sql(args["reference"], args["current"], exact, frozen)),
                                           exact, frozen)
    t3 = time.perf_counter()
    return {"baseline_s": baseline_s, "check_s": t3 - t1, "metrics_s": t3 - t2, "rows": len(rows),
            "baseline_bytes": len(json.dumps(frozen.to_dict())), "rss_imports_mib": imported,
            "recomputed": [c.name for c in exact], "columns": {n: m.as_dict() for n, m in metrics.items()}}


# ---------------------------------------------------------------------------------- Evidently
def evidently(args: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = peak_rss_mib()
    t0 = time.perf_counter()
    ref, cur = pd.read_parquet(args["reference"]), pd.read_parquet(args["current"])
    t1 = time.perf_counter()
    definition = DataDefinition(numerical_columns=args["numeric"], categorical_columns=args["categorical"])
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                               Dataset.from_pandas(ref, data_definition=definition))
    t2 = time.perf_counter()
    columns = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            columns[cfg["column"]] = {"method": cfg["method"], "threshold": cfg["threshold"],
                                      "value": _number(m["value"])}
    return {"load_s": t1 - t0, "check_s": t2 - t1, "rss_imports_mib": imported, "columns": columns}


# ---------------------------------------------------------------------------------- scipy, exact
def scipy_exact(args: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    imported = peak_rss_mib()
    t0 = time.perf_counter()
    ref, cur = pd.read_parquet(args["reference"]), pd.read_parquet(args["current"])
    t1 = time.perf_counter()
    columns: dict[str, Any] = {}
    for name in args["numeric"]:
        a, b = ref[name].to_numpy(dtype=float), cur[name].to_numpy(dtype=float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        w1 = float(stats.wasserstein_distance(a, b))
        ks = stats.ks_2samp(a, b)
        columns[name] = {"wasserstein": w1, "wasserstein_norm": w1 / max(float(np.std(a)), 0.001),
                         "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue)}
    for name in args["categorical"]:
        rc, cc = ref[name].value_counts(), cur[name].value_counts()  # NULLs left out, as the SQL does
        keys = sorted(set(rc.index) | set(cc.index))
        r = np.array([rc.get(k, 0) for k in keys], dtype=float)
        c = np.array([cc.get(k, 0) for k in keys], dtype=float)
        chi = stats.chi2_contingency(np.array([r, c]))
        columns[name] = {"js": float(jensenshannon(r, c, base=2)), "chi2": float(chi.statistic),
                         "chi2_p": float(chi.pvalue)}
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "check_s": t2 - t1, "rss_imports_mib": imported, "columns": columns}


METHODS = {"app": app, "evidently": evidently, "scipy": scipy_exact}

if __name__ == "__main__":
    out = METHODS[sys.argv[1]](json.loads(sys.argv[2]))
    out |= {"rss_peak_mib": peak_rss_mib(), "cpu_s": _cpu_s()}
    print(json.dumps(out))
