"""Benchmark: one drift check of a current window against its reference, four ways, side by side
in one run (``shared.drift``; Evidently, https://github.com/evidentlyai/evidently; scipy):

- this product, binned and exact: ``shared.drift`` by SQL pushdown. The warehouse is the local
  workspace (``python -m local.workspace``, DuckDB over Delta tables) in its own process, started
  afresh for each run; the checking process is the app's part (databricks-sdk,
  ``shared.statements``, ``shared.drift``), which only ever receives the aggregate rows. Timed:
  binned, the ``binned_sql`` statement (one grouped scan), ``binned_metrics`` and the exact
  statement for any numeric column whose verdict the bound leaves open; exact, the ``drift_sql``
  statement and ``drift_metrics``. The baseline freeze (``baseline_sql``, once per model
  version) is shown apart;
- Evidently 0.7.23 ``Report([DataDriftPreset()])`` on pandas frames (its default per-column
  tests), installed into its own virtual environment ``.local/bench-evidently-venv`` from
  ``bench/requirements-evidently.txt`` (pip from the configured index, as infra/check.sh
  installs checkov), never into .venv;
- exact scipy on the same frames (``wasserstein_distance``, ``ks_2samp``, ``jensenshannon``,
  ``chi2_contingency``).

Each method runs in a fresh child process (``bench.drift_methods``), so the peak memory
reported (``VmHWM``) is that check's alone; the warehouse's own peak (``VmHWM``) is
reported next to this product's. Evidently and scipy read the data from Parquet into memory
first (time shown as "load"); the product reads nothing: the warehouse scans its tables.

Data: ``--rows`` reference and ``--rows`` current rows (default 1 000 000 each), 6 numeric
and 4 categorical columns, drift in some (``COLUMNS``), NULLs, NaNs and ties included. Then this
product alone at ``--big`` rows per side (default 10 000 000), in the ``--big-modes``.

Verdicts, made the same way for every method so they can agree:

- numeric: normalised Wasserstein W1 / max(std_pop(reference), 0.001) >= 0.1, Evidently's
  default test and threshold for a numeric column with more than 1 000 reference values and
  more than 5 distinct values (its ``stattests/registry.py``);
- categorical: Jensen-Shannon distance >= 0.1 in natural-log units, Evidently's default; this
  product and scipy report base 2, so their threshold is 0.1 / sqrt(ln 2) = 0.1201;
- and, for this product and scipy only, the p-value tests: KS p <= 0.05 (numeric) and
  chi-square contingency p < 0.05 (categorical).

Prints Markdown tables; ``--write`` appends them to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.drift_methods import peak_rss_mib
from bench.report import emit, machine
from local.workspace.catalog import UnityCatalog
from shared.settings import APP_ROOT

TOKEN = "bench-drift"
WAREHOUSE = "bench-warehouse"
EVIDENTLY_VENV = APP_ROOT / ".local" / "bench-evidently-venv"
EVIDENTLY_REQUIREMENTS = APP_ROOT / "bench" / "requirements-evidently.txt"
W1_THRESHOLD = 0.1
JS_THRESHOLD_NAT = 0.1
JS_THRESHOLD_BASE2 = JS_THRESHOLD_NAT / math.sqrt(math.log(2))
P_THRESHOLD = 0.05


# ---------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # numeric | categorical
    drift: str  # what differs in the current window


COLUMNS = (
    Spec("trip_distance", "numeric", "none (lognormal)"),
    Spec("fare_amount", "numeric", "mean +1.5 (normal, sd 5)"),
    Spec("duration_min", "numeric", "scale x1.3 (gamma)"),
    Spec("tip_amount", "numeric", "mean x1.05, cents (ties)"),
    Spec("pickup_hour", "numeric", "none (uniform, 1 % NULL, 1 % NaN)"),
    Spec("surge", "numeric", "none (90 % exactly 1.0)"),
    Spec("pickup_zone", "categorical", "none (40 zones)"),
    Spec("payment_type", "categorical", "card 60 -> 40 %"),
    Spec("vendor", "categorical", "50/50 -> 51/49"),
    Spec("dropoff_zone", "categorical", "3 new zones, 12 %"),
)


def _strings(rng: np.random.Generator, n: int, values: list[str], p: list[float]) -> pa.Array:
    idx = pa.array(rng.choice(len(values), n, p=np.array(p) / sum(p)).astype(np.int32))
    return pa.DictionaryArray.from_arrays(idx, pa.array(values)).cast(pa.string())


def window(n: int, current: bool, seed: int) -> pa.Table:
    """One side's rows (``COLUMNS``)."""
    rng = np.random.default_rng(seed)
    zones = [f"zone_{i:02d}" for i in range(40)]
    zipf = [1.0 / (i + 1) for i in range(40)]
    hour = rng.uniform(0, 24, n)
    missing = rng.random(n)
    hour[missing < 0.01] = np.nan
    surge = np.where(rng.random(n) < 0.9, 1.0, rng.uniform(1.0, 3.0, n))
    drop = [f"zone_{i:02d}" for i in range(30)] + (["new_a", "new_b", "new_c"] if current else [])
    drop_p = [1.0] * 30 + ([1.4, 1.4, 1.4] if current else [])
    return pa.table({
        "trip_distance": rng.lognormal(1.0, 0.6, n),
        "fare_amount": rng.normal(16.5 if current else 15.0, 5.0, n),
        "duration_min": rng.gamma(2.0, 7.8 if current else 6.0, n),
        "tip_amount": np.round(rng.exponential(2.1 if current else 2.0, n), 2),
        "pickup_hour": pa.array(hour, mask=(missing >= 0.01) & (missing < 0.02)),  # NULLs besides the NaNs
        "surge": surge,
        "pickup_zone": _strings(rng, n, zones, zipf),
        "payment_type": _strings(rng, n, ["card", "cash", "no_charge", "dispute"],
                                 [0.4, 0.5, 0.05, 0.05] if current else [0.6, 0.3, 0.05, 0.05]),
        "vendor": _strings(rng, n, ["A", "B"], [0.51, 0.49] if current else [0.5, 0.5]),
        "dropoff_zone": _strings(rng, n, drop, drop_p),
    })


# ---------------------------------------------------------------------------------- processes
def ensure_evidently() -> Path:
    """The Evidently environment, made again only when missing or its requirements changed."""
    python = EVIDENTLY_VENV / "bin" / "python"
    stamp = EVIDENTLY_VENV / ".requirements.sha"
    want = hashlib.sha256(EVIDENTLY_REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return python
    print(f"[bench] installing Evidently into {EVIDENTLY_VENV}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(EVIDENTLY_REQUIREMENTS)],
                          capture_output=True, text=True)
    # pip's notes about index folders without the package are noise here (infra/check.sh drops them too)
    sys.stderr.write("".join(line for line in done.stderr.splitlines(keepends=True) if "is ignored" not in line))
    done.check_returncode()
    stamp.write_text(want)
    return python


def child(python: Path | str, method: str, args: dict[str, Any]) -> dict[str, Any]:
    print(f"[bench] {method} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([str(python), "-m", "bench.drift_methods", method, json.dumps(args)], cwd=APP_ROOT,
                          check=True, capture_output=True, text=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    return out


class Warehouse:
    """The local workspace in its own process, serving the Delta tables under ``data_dir/uc``."""

    def __init__(self, data_dir: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "local.workspace", "--port", "0", "--token", TOKEN, "--log-level", "WARNING",
             "--registry-uri", f"sqlite:///{data_dir / 'mlflow.db'}", "--data-dir", str(data_dir)],
            cwd=APP_ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the local workspace did not start: {self.url!r}")

    def peak_mib(self) -> float:
        return peak_rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------- verdicts
def drifted(kind: str, value: float | None, base2: bool = True) -> bool | None:
    if value is None:
        return None
    if kind == "numeric":
        return value >= W1_THRESHOLD
    return value >= (JS_THRESHOLD_BASE2 if base2 else JS_THRESHOLD_NAT)


def evidently_drifted(col: dict[str, Any]) -> bool | None:
    value, thr, method = col["value"], col["threshold"], col["method"]
    if value is None:
        return None
    return value >= thr if "distance" in method.lower() else value <= thr  # stattests/*.py: distances >=, p <=


def yes(v: bool | None) -> str:
    return "n/a" if v is None else ("drift" if v else "-")


def spaced(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if v == 0:
        return "0"  # underflow: below the smallest double
    if abs(v) < 10 ** -digits:
        return f"{v:.1e}"
    return f"{v:.{digits}f}"


# ---------------------------------------------------------------------------------- run
MODES = ("binned", "exact")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side, all methods")
    parser.add_argument("--big", type=int, default=10_000_000, help="rows per side, this product alone (0: skip)")
    parser.add_argument("--big-modes", default=",".join(MODES), help="this product's modes at --big rows")
    parser.add_argument("--write", action="store_true", help="append the tables to docs/benchmarks.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    evidently_python = ensure_evidently()
    numeric = [c.name for c in COLUMNS if c.kind == "numeric"]
    categorical = [c.name for c in COLUMNS if c.kind == "categorical"]
    runs = [(args.rows, mode) for mode in MODES] + (
        [(args.big, mode) for mode in args.big_modes.split(",") if mode] if args.big else [])

    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        catalog = UnityCatalog(root / "ws" / "uc")
        for n in sorted({n for n, _ in runs}):
            for side, current, seed in (("ref", False, 1), ("cur", True, 2)):
                table = window(n, current, seed)
                catalog.create_table(f"main.bench.{side}_{n}", table)
                if n == args.rows:
                    pq.write_table(table, root / f"{side}.parquet")
                del table

        product: dict[tuple[int, str], dict[str, Any]] = {}
        for n, mode in runs:
            wh = Warehouse(root / "ws")
            try:
                product[n, mode] = child(sys.executable, "app", {
                    "host": wh.url, "token": TOKEN, "warehouse": WAREHOUSE, "numeric": numeric,
                    "categorical": categorical, "reference": f"(SELECT * FROM main.bench.ref_{n})",
                    "current": f"(SELECT * FROM main.bench.cur_{n})", "mode": mode, "verdict_w1": W1_THRESHOLD,
                    "verdict_p": P_THRESHOLD})
                product[n, mode]["warehouse_peak_mib"] = wh.peak_mib()
            except subprocess.CalledProcessError as exc:
                if n == args.rows:
                    raise
                # A big run that fails (e.g. out of memory) is recorded as not measured, not guessed.
                last = (exc.stderr or "").strip().splitlines()[-1:]
                product[n, mode] = {"failed": last or [f"exit {exc.returncode}"]}
            finally:
                wh.stop()
        frames = {"reference": str(root / "ref.parquet"), "current": str(root / "cur.parquet"),
                  "numeric": numeric, "categorical": categorical}
        ev = child(evidently_python, "evidently", frames)
        sp = child(sys.executable, "scipy", frames)

    emit(tables(args.rows, product, ev, sp, load, time.perf_counter() - started), args.write)
    return 0


def tables(rows: int, product: dict[tuple[int, str], dict[str, Any]], ev: dict[str, Any], sp: dict[str, Any],
           load: float, total_s: float) -> str:
    binned, exact = product[rows, "binned"], product[rows, "exact"]
    agree = {"binned": 0, "exact": 0, "evidently": 0}
    p_agree = {"binned": 0, "exact": 0}
    per_column = []
    for c in COLUMNS:
        b, x, e, s = (binned["columns"][c.name], exact["columns"][c.name], ev["columns"][c.name],
                      sp["columns"][c.name])
        key = "wasserstein_norm" if c.kind == "numeric" else "js"
        truth = drifted(c.kind, s[key])
        verdicts = {"binned": drifted(c.kind, b[key]), "exact": drifted(c.kind, x[key]),
                    "evidently": evidently_drifted(e)}
        for name, v in verdicts.items():
            agree[name] += v == truth
        ev_value = e["value"] if c.kind == "numeric" else e["value"] / math.sqrt(math.log(2))  # to base 2
        p_key = "ks_p" if c.kind == "numeric" else "chi2_p"
        p_drift = (lambda p: p <= P_THRESHOLD) if c.kind == "numeric" else (lambda p: p < P_THRESHOLD)
        for name, r in (("binned", b), ("exact", x)):
            p_agree[name] += p_drift(r[p_key]) == p_drift(s[p_key])
        bound = b.get("wasserstein_norm_bound")
        shown = fmt(b[key]) + (f" ± {fmt(bound, 5)}" if bound is not None else "") + (
            " (recomputed exactly)" if c.name in binned["recomputed"] else "")
        ks = (f"{fmt(s['ks_d'])} / {fmt(b['ks_d'])} ± {fmt(b['ks_bound'], 5)}"
              if c.kind == "numeric" and b.get("ks_bound") is not None else
              f"{fmt(s['ks_d'])} / {fmt(b['ks_d'])}" if c.kind == "numeric" else "")
        test = "W1/std >= 0.1" if c.kind == "numeric" else "JS >= 0.1 nat (0.1201 base 2)"
        per_column.append(
            f"| {c.name} | {c.drift} | {test} | {fmt(s[key])} | {shown} | {fmt(x[key])} | {fmt(ev_value)} | "
            f"{yes(truth)} / {yes(verdicts['binned'])} / {yes(verdicts['exact'])} / {yes(verdicts['evidently'])} | "
            f"{ks} |")
    n = len(COLUMNS)

    def row(name: str, r: dict[str, Any], agreeing: str, load_s: str) -> str:
        return (f"| {name} | {r['check_s']:.2f} | {r['check_s'] / binned['check_s']:.1f}x | {load_s} | "
                f"{r['rss_imports_mib']:.0f} | {r['rss_peak_mib']:.0f} | "
                f"{round(r['warehouse_peak_mib']) if 'warehouse_peak_mib' in r else 'n/a'} | {agreeing} |")

    out = [
        f"### Drift check: binned vs exact SQL pushdown vs Evidently vs exact scipy ({machine()}; "
        f"{spaced(rows)} reference + {spaced(rows)} current rows x 10 columns (6 numeric, 4 categorical), each method "
        f"in a fresh process, load average {load:.1f} at the start)",
        "",
        "| method | check s | vs binned | load s | RSS after imports MiB | peak RSS MiB | warehouse peak RSS MiB | "
        "verdicts as exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("this product, binned: `binned_sql` (one grouped scan) + `binned_metrics`, open verdicts recomputed",
            binned, f"{agree['binned']}/{n}", "none"),
        row("this product, exact: `drift_sql` (sorts each numeric column) + `drift_metrics`", exact,
            f"{agree['exact']}/{n}", "none"),
        row("Evidently 0.7.23 `DataDriftPreset` (default tests)", ev, f"{agree['evidently']}/{n}",
            f"{ev['load_s']:.2f}"),
        row("exact scipy (W1, KS, JS, chi2 on raw values)", sp, f"{n}/{n}", f"{sp['load_s']:.2f}"),
        "",
        f"Binned: {binned['rows']} result rows, recomputed exactly: {', '.join(binned['recomputed']) or 'none'}; "
        f"exact: {exact['rows']} result rows. Freezing the baseline (`baseline_sql`, once per model version) took "
        f"{binned['baseline_s']:.2f} s and stores {spaced(binned['baseline_bytes'])} bytes of JSON (the binned cells "
        f"follow from it). Evidently's load + check: {ev['load_s'] + ev['check_s']:.2f} s "
        f"({(ev['load_s'] + ev['check_s']) / binned['check_s']:.1f}x the binned check).",
        "",
        "| column | drift in the current window | verdict test | exact (scipy) | binned ± bound | exact SQL | "
        "Evidently | verdict scipy / binned / exact SQL / Evidently | KS D scipy / binned ± bound |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
        *per_column,
        "",
        f"Values: W1/std for numeric columns, JS distance in base 2 for categorical ones (Evidently's natural-log "
        f"JS divided by sqrt(ln 2)). p-value tests (KS p <= 0.05, chi-square p < 0.05) alike with scipy's: binned "
        f"{p_agree['binned']}/{n}, exact {p_agree['exact']}/{n}. This product's JS is on the frozen reference "
        f"categories with unseen values pooled in one \"other\" bucket; Evidently and scipy use one bin per value.",
        "",
    ]
    sizes = sorted({k for k in product})
    if any(k[0] != rows for k in sizes):
        out += ["| rows per side | mode | check s | vs the same mode at " + spaced(rows) + " | checking process peak "
                "RSS MiB | warehouse peak RSS MiB | result rows |", "|---:|---|---:|---:|---:|---:|---:|"]
        for n_rows, mode in sizes:
            r = product[n_rows, mode]
            if "failed" in r:
                out.append(f"| {spaced(n_rows)} | {mode} | not measured: the check failed ({r['failed'][0]}) "
                           "| | | | |")
                continue
            out.append(f"| {spaced(n_rows)} | {mode} | {r['check_s']:.2f} | "
                       f"{r['check_s'] / product[rows, mode]['check_s']:.1f}x | {r['rss_peak_mib']:.0f} | "
                       f"{r['warehouse_peak_mib']:.0f} | {r['rows']} |")
        out += ["", f"Whole run: {total_s / 60:.1f} min."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
