"""One monitoring pass over an environment: judge the serving version's new windows, decide.

Per serving version (never mixing versions in one window, which mlops-stacks' check does: its
``LIMIT 5`` spans every model id, https://github.com/databricks/mlops-stacks): freeze the baseline once
(a baseline table, or the version's first serving
window with at least ``min_rows`` rows), then judge each of the latest M complete windows not
judged yet, by SQL pushdown through the Statement Execution API (only aggregates come back:
``shared.drift``, ``shared.monitoring.performance``, ``relations.health``), or from the metric
tables of a Databricks data quality monitor (``shared.monitoring.lakehouse``). Then one
decision over the latest M windows (``shared.monitoring.decide``), recorded with its figures.

Never waits (docs/architecture.md principle 3): every statement of the pass is submitted before any is
awaited; while one runs, ``Pending`` is raised with the ids kept in the cursor, and the next
message polls them. Windows already judged are not measured again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import statements as sql
from shared.monitoring import decide, performance, relations, store
from shared.monitoring.policy import (
    DRIFT_METRICS,
    HEALTH_METRICS,
    LABEL_PLACEHOLDER,
    PERFORMANCE_METRICS,
    Check,
    Monitoring,
    seconds,
)
from shared.monitoring.relations import LabelJoin, Watched
from shared.policy import Environment

_DRIFT_VALUE = {"psi": "psi", "js": "js", "ks": "ks_d", "wasserstein": "wasserstein_norm", "chi2": "chi2_p"}
_BOUND = {"ks": "ks_bound", "wasserstein": "wasserstein_norm_bound"}  # the binned figures' error bounds
_LAKEHOUSE_DRIFT = {"psi": "population_stability_index", "js": "js_distance", "ks": "ks_statistic",
                    "wasserstein": "wasserstein_distance", "chi2": "chi_squared_pvalue"}
_LAKEHOUSE_QUALITY = {"rmse": "root_mean_squared_error", "mae": "mean_absolute_error", "f1": "f1_score",
                      "accuracy": "accuracy_score", "precision": "precision", "recall": "recall"}
PREDICTION, LABEL = "__prediction", "__label"


class Pending(Exception):
    """Statements (or a monitor refresh) still running; the cursor keeps their ids."""


class CheckFailed(Exception):
    """The check cannot be made as configured (a missing table, a failed statement): recorded,
    retried with backoff by the caller, never a decision on failed data."""


@dataclass
class Context:
    w: Any
    warehouse_id: str
    tables: Any
    model: str
    environment: str
    env: Environment
    cursor: dict[str, Any]
    now: float
    deadline: float
    columns_of: Callable[[str], list[Watched]]  # the model signature's inputs of a version
    serving_since: Callable[[str], float | None]
    pending: list[str] = field(default_factory=list)

    @property
    def m(self) -> Monitoring:
        assert self.env.monitoring is not None
        return self.env.monitoring

    @property
    def endpoint(self) -> str:
        return self.env.endpoint

    def run(self, key: str, statement: str) -> list[dict[str, Any]] | None:
        """Rows of ``statement``, or None (and noted) while it runs. Finished results (a few
        aggregate rows) are kept in the cursor until the pass completes, so a pass that waits on
        one statement does not submit the others again."""
        done: dict[str, Any] = self.cursor.setdefault("results", {})
        if key in done:
            return list(done[key])
        try:
            result = sql.run(self.w, self.warehouse_id, statement, self.cursor, key, self.deadline)
        except sql.StatementPending:
            self.pending.append(key)
            return None
        except sql.StatementFailed as exc:
            raise CheckFailed(str(exc)) from exc
        names = [n for n, _ in result.columns]
        rows = [dict(zip(names, row, strict=True)) for row in sql.rows(self.w, result)]
        done[key] = rows
        return rows


def watched(ctx: Context, version: str) -> list[Watched]:
    m = ctx.m
    if m.columns is None:
        return ctx.columns_of(version)
    cats = set(m.categorical)
    return [Watched(c, "categorical" if c in cats else "numeric") for c in m.columns]


def records(ctx: Context, columns: list[Watched]) -> relations.Records:
    m = ctx.m
    if m.source is not None:
        s = m.source
        return relations.table_records(s.table, s.timestamp_column, s.version_column, s.prediction_column,
                                       s.request_id_column, columns, m.prediction_kind)
    assert ctx.env.inference_table is not None
    key = m.labels.request_key if m.labels else "client_request_id"
    return relations.payload_records(ctx.env.inference_table.payload_table(ctx.endpoint), columns,
                                     m.prediction_kind, key)


def _drift_columns(columns: list[Watched], m: Monitoring) -> list[Any]:
    """The watched columns and the prediction, unless the baseline table has no prediction."""
    from shared.drift import Column

    cols = [Column(c.name, c.kind) for c in columns]
    if m.baseline.table is None or m.baseline.prediction_column:
        cols.append(Column(PREDICTION, m.prediction_kind))
    return cols


def _label_join(m: Monitoring) -> LabelJoin | None:
    if m.labels is None:
        return None
    return LabelJoin(m.labels.table, m.labels.key, m.labels.column, m.prediction_kind)


def freeze_baseline(ctx: Context, version: str, columns: list[Watched], recs: relations.Records,
                    ) -> dict[str, Any] | None:
    """Freeze the version's baseline now if it can be (the one stored first wins); None while it
    cannot yet."""
    from shared import drift

    m = ctx.m
    cols = _drift_columns(columns, m)
    if m.baseline.table is not None:
        b = m.baseline
        reference = relations.baseline_table(b.table, columns, b.version_column, version, b.prediction_column,
                                             b.label_column, m.prediction_kind)
        info: dict[str, Any] = {"kind": "table", "table": b.table, "reference": reference}
    else:
        W = m.window_seconds
        since = ctx.serving_since(version) or ctx.now - 50 * W
        counts = ctx.run(f"{version}:counts", relations.row_counts(recs, version, since, W))
        if counts is None:
            return None
        complete = [r for r in counts if (int(r["w"]) + 1) * W <= ctx.now and int(r["n"]) >= m.decision.min_rows]
        if not complete:
            return None
        start = int(complete[0]["w"]) * W
        reference = relations.window(recs, version, start, start + W)
        info = {"kind": "window", "start": start, "end": start + W, "rows": int(complete[0]["n"]),
                "reference": reference}
    rows = ctx.run(f"{version}:baseline", drift.baseline_sql(reference, cols))
    if rows is None:
        return None
    frozen = drift.freeze(rows, cols)
    return store.freeze_baseline(ctx.tables, ctx.endpoint, version, {
        **info, "version": version, "columns": [[c.name, c.kind] for c in columns], "frozen": frozen.to_dict(),
        "frozen_at": ctx.now})


def _window_bounds(ctx: Context, version: str, baseline: dict[str, Any]) -> list[tuple[float, float]]:
    """The latest M complete windows, and any earlier window of the version whose labels were
    not due when it was judged (its performance is measured once they are)."""
    m, W = ctx.m, ctx.m.window_seconds
    last_end = math.floor(ctx.now / W) * W
    first = baseline.get("end") or -math.inf  # never judge the baseline window against itself
    latest = {(last_end - k * W, last_end - (k - 1) * W) for k in range(m.decision.windows, 0, -1)}
    late = {(w["start"], w["end"]) for w in store.windows(ctx.tables, ctx.endpoint, version) if not w.get("complete")}
    return sorted((s, e) for s, e in latest | late if s >= first)


def _value(cd: Any, metric: str) -> float | None:
    v = getattr(cd, _DRIFT_VALUE[metric], None) if cd is not None else None
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _previous(ctx: Context, version: str, start: float) -> dict[str, str]:
    prev = store.window(ctx.tables, ctx.endpoint, version, start - ctx.m.window_seconds)
    return {f["check"]: f["verdict"] for f in (prev or {}).get("figures", [])}


def _drift_targets(check: Check, columns: list[Watched]) -> list[tuple[str, str]]:
    """(figure label, column) pairs a drift check covers."""
    if check.of == "features":
        return [(f"{check.metric}({c.name})", c.name) for c in columns]
    if check.of in ("prediction", "label"):
        return [(check.label, PREDICTION if check.of == "prediction" else LABEL)]
    return [(check.label, check.of or "")]


def judge_window(ctx: Context, version: str, columns: list[Watched], recs: relations.Records, baseline: dict[str, Any],
                 start: float, end: float) -> dict[str, Any] | None:
    """Measure one window; None while a statement runs."""
    from shared import drift

    m, min_rows = ctx.m, ctx.m.decision.min_rows
    checks = m.all_checks
    label_checks = any(m.uses_labels(c) for c in checks)
    labels_due = not label_checks or m.labels is None or end + seconds(m.labels.delay) <= ctx.now
    current = relations.window(recs, version, start, end)
    cols = _drift_columns(columns, m)
    frozen = drift.Baseline.from_dict(baseline["frozen"])
    tag = f"{version}:{int(start)}"
    results: dict[str, Any] = {}
    if any(c.metric in DRIFT_METRICS and c.of != "label" for c in checks):
        results["drift"] = _drift(ctx, tag, baseline["reference"], current, columns, cols, frozen)
    needs_labels = labels_due and m.labels is not None and label_checks
    labelled = relations.window(recs, version, start, end, _label_join(m)) if m.labels else None
    if labelled and needs_labels:
        kind = m.prediction_kind
        perf_sql = performance.regression_sql(labelled) if m.problem == "regression" else \
            performance.classification_sql(labelled)
        rows = ctx.run(f"{tag}:perf", perf_sql)
        if rows is not None:
            results["perf"] = rows[0] if m.problem == "regression" else performance.classification(
                [list(r.values()) for r in rows], m.positive_label)
        if any(c.of == "label" for c in checks):
            label_col = [drift.Column(LABEL, kind)]
            reference = _label_reference(ctx, baseline, recs, version)
            lb = ctx.run(f"{tag}:labelbase", drift.baseline_sql(reference, label_col))
            if lb is not None:
                lf = drift.freeze(lb, label_col)
                lrows = ctx.run(f"{tag}:labeldrift", drift.drift_sql(reference, labelled, label_col, lf))
                results["label"] = None if lrows is None else drift.drift_metrics(lrows, label_col, lf)
            else:
                results["label"] = None
    custom = {n: s for n, s in m.custom.items() if LABEL_PLACEHOLDER not in s}
    labelled_custom = {n: s for n, s in m.custom.items() if LABEL_PLACEHOLDER in s}
    rows = ctx.run(f"{tag}:agg", performance.aggregates_sql(current, custom))
    results["agg"] = rows[0] if rows is not None else None
    if labelled_custom and labelled and needs_labels:
        rows = ctx.run(f"{tag}:lagg", performance.aggregates_sql(labelled, labelled_custom))
        results["lagg"] = rows[0] if rows is not None else None
    if any(c.metric in HEALTH_METRICS for c in checks) and ctx.env.inference_table and m.source is None:
        rows = ctx.run(f"{tag}:health", relations.health(ctx.env.inference_table.payload_table(ctx.endpoint),
                                                         version, start, end))
        results["health"] = rows[0] if rows is not None else None
    if any(v is None for v in results.values()):
        return None
    return _figures(ctx, version, start, end, checks, columns, results, labels_due, min_rows)


def _drift(ctx: Context, tag: str, reference: str, current: str, columns: list[Watched], cols: list[Any],
           frozen: Any) -> dict[str, Any] | None:
    """The window's drift figures in the policy's ``drift.mode`` (``shared.monitoring.policy.Drift``):
    exact; or binned (one grouped scan), then exact for the columns below ``exact_below`` (auto)
    and for those whose verdict the binned bound leaves open. None while a statement runs."""
    from shared import drift
    from shared.drift import binned

    mode = ctx.m.drift
    if mode.mode == "exact":
        rows = ctx.run(f"{tag}:drift", drift.drift_sql(reference, current, cols, frozen))
        return None if rows is None else drift.drift_metrics(rows, cols, frozen)
    rows = ctx.run(f"{tag}:binned", binned.binned_sql(reference, current, cols, frozen, mode.cells))
    if rows is None:
        return None
    got = binned.binned_metrics(rows, cols, frozen)
    redo = {name for name, cd in got.items() if isinstance(cd, binned.BinnedDrift) and mode.mode == "auto"
            and cd.n_ref + cd.n_cur < mode.exact_below}
    for c in ctx.m.all_checks:
        if c.metric in _BOUND and c.of != "label":
            redo |= {col for _, col in _drift_targets(c, columns)
                     if decide.undecided(c, _value(got.get(col), c.metric), _bound(got.get(col), c.metric))}
    exact = [c for c in cols if c.name in redo]
    if not exact:
        return got
    rows = ctx.run(f"{tag}:drift", drift.drift_sql(reference, current, exact, frozen))
    return None if rows is None else {**got, **drift.drift_metrics(rows, exact, frozen)}


def _bound(cd: Any, metric: str) -> float | None:
    return getattr(cd, _BOUND[metric], None) if cd is not None and metric in _BOUND else None


def _label_reference(ctx: Context, baseline: dict[str, Any], recs: relations.Records, version: str) -> str:
    m = ctx.m
    if baseline["kind"] == "table":
        b = m.baseline
        if not b.label_column:
            raise CheckFailed("a label drift check against a baseline table needs baseline.label_column")
        return relations.baseline_table(b.table or "", [], b.version_column, version, None, b.label_column,
                                        m.prediction_kind)
    return relations.window(recs, version, baseline["start"], baseline["end"], _label_join(m))


def _figures(ctx: Context, version: str, start: float, end: float, checks: list[Check], columns: list[Watched],
             results: dict[str, Any], labels_due: bool, min_rows: int) -> dict[str, Any]:
    prev = _previous(ctx, version, start)
    figures: list[decide.Figure] = []
    agg = results.get("agg") or {}
    n = int(agg.get("n") or 0)
    perf = results.get("perf") or {}
    n_labelled = int(perf.get("n") or 0)

    def add(check: Check, label: str, value: float | None, rows: int, pending: bool = False,
            bound: float | None = None) -> None:
        figures.append(decide.judge(check, value, rows, min_rows, was_violating=prev.get(label) == decide.VIOLATION,
                                    pending=pending, label=label, bound=bound))

    for c in checks:
        if c.metric in DRIFT_METRICS:
            for label, col in _drift_targets(c, columns):
                if col == LABEL:
                    cd = (results.get("label") or {}).get(LABEL)
                    add(c, label, _value(cd, c.metric), cd.n_cur if cd else n_labelled, pending=not labels_due)
                else:
                    cd = (results.get("drift") or {}).get(col)
                    if cd is None and col != PREDICTION:
                        raise CheckFailed(f"{c.label}: {col!r} is not a watched column")
                    add(c, label, _value(cd, c.metric), cd.n_cur if cd else 0, bound=_bound(cd, c.metric))
        elif c.metric in PERFORMANCE_METRICS:
            add(c, c.label, perf.get(c.metric), n_labelled, pending=not labels_due)
        elif c.metric == "custom":
            needs = ctx.m.uses_labels(c)
            src = (results.get("lagg") or {}) if needs else agg
            value = src.get(f"custom_{c.name}")
            add(c, c.label, None if value is None else float(value), int(src.get("n") or 0),
                pending=needs and not labels_due)
        else:
            h = results.get("health") or {}
            requests = int(h.get("requests") or 0)
            value = {"error_rate": (int(h.get("server_errors") or 0) / requests) if requests else None,
                     "p95_latency_ms": h.get("p95_ms"), "request_count": float(requests)}[c.metric]
            # Too little traffic is what a request_count check is for: always judged.
            add(c, c.label, None if value is None else float(value),
                min_rows if c.metric == "request_count" else requests)
    verdict = decide.window_verdict(figures)
    return {"version": version, "start": start, "end": end, "rows": n, "labelled_rows": n_labelled,
            "figures": [f.as_dict() for f in figures], "verdict": verdict, "complete": labels_due,
            "judged_at": ctx.now}


def _lakehouse_windows(ctx: Context, version: str) -> list[dict[str, Any]] | None:
    """Windows of the data quality monitor's metric tables not judged yet (``lakehouse_monitor``)."""
    from shared.monitoring import lakehouse

    lm = ctx.m.lakehouse_monitor
    assert lm is not None
    if lm.refresh and not ctx.cursor.get("refreshed"):
        rid = ctx.cursor.get("refresh_id")
        if rid is None:
            ctx.cursor["refresh_id"] = lakehouse.request_refresh(ctx.w, lm.table)
            ctx.pending.append("refresh")
            return None
        state = lakehouse.refresh_state(ctx.w, lm.table, rid)
        if state in ("PENDING", "RUNNING"):
            ctx.pending.append("refresh")
            return None
        if state != "SUCCESS":
            raise CheckFailed(f"the refresh {rid} of the monitor of {lm.table} ended {state}")
        ctx.cursor["refreshed"] = True
    since = ctx.serving_since(version) or ctx.now - 50 * ctx.m.window_seconds
    try:
        found = lakehouse.read_windows(ctx.w, ctx.warehouse_id, lm.table, model_id=version, drift_type=lm.drift_type,
                                       since=datetime.fromtimestamp(since, UTC), cursor=ctx.cursor,
                                       deadline=ctx.deadline)
    except sql.StatementPending:
        ctx.pending.append("lakehouse")
        return None
    except sql.StatementFailed as exc:
        raise CheckFailed(str(exc)) from exc
    log = lakehouse.monitor_tables(ctx.w, lm.table)[3].data_profiling_config.inference_log
    names = {"prediction": log.prediction_column if log else "prediction",
             "label": (log.label_column if log else None) or "label"}
    m, out = ctx.m, []
    ended = [win for win in found if win.end.timestamp() <= ctx.now]  # a window still open is not judged
    for win in ended[-m.decision.windows:]:
        start, end = win.start.timestamp(), win.end.timestamp()
        if store.window(ctx.tables, ctx.endpoint, version, start):
            continue
        prev = _previous(ctx, version, start)
        figures = []
        for c in m.all_checks:
            if c.metric in DRIFT_METRICS:
                skip = {names["prediction"], names["label"]}
                cols = ([col for col in win.drift if not col.startswith(":") and col not in skip]
                        if c.of == "features" else [names.get(c.of or "", c.of or "")])
                for col in cols:
                    label = f"{c.metric}({col})" if c.of == "features" else c.label
                    value = (win.drift.get(col) or {}).get(_LAKEHOUSE_DRIFT[c.metric])
                    figures.append(decide.judge(c, value, int(win.counts.get(col) or 0), m.decision.min_rows,
                                                was_violating=prev.get(label) == decide.VIOLATION, label=label))
            else:
                value = win.quality.get(_LAKEHOUSE_QUALITY[c.metric])
                figures.append(decide.judge(c, value, int(win.counts.get(":table") or 0), m.decision.min_rows,
                                            was_violating=prev.get(c.label) == decide.VIOLATION))
        out.append({"version": version, "start": start, "end": end, "rows": int(win.counts.get(":table") or 0),
                    "figures": [f.as_dict() for f in figures], "verdict": decide.window_verdict(figures),
                    "complete": True, "judged_at": ctx.now, "source": f"data quality monitor of {lm.table}"})
    return out


def check_version(ctx: Context, version: str, explicit: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """Judge the version's new windows and decide; the recorded decision, or None if nothing new
    was judged. Raises Pending while statements run."""
    m = ctx.m
    judged: list[dict[str, Any]] = []
    if m.lakehouse_monitor is not None:
        got = _lakehouse_windows(ctx, version)
        if got is None:
            raise Pending(", ".join(ctx.pending))
        judged = got
        for win in judged:
            store.save_window(ctx.tables, ctx.endpoint, version, win["start"], win)
    else:
        # The watched columns are frozen with the baseline: the signature is read once per version.
        baseline = store.baseline(ctx.tables, ctx.endpoint, version)
        columns = [Watched(n, k) for n, k in baseline["columns"]] if baseline else watched(ctx, version)
        recs = records(ctx, columns)
        baseline = baseline or freeze_baseline(ctx, version, columns, recs)
        if baseline is None:
            if ctx.pending:
                raise Pending(", ".join(ctx.pending))
            return None
        bounds = [explicit] if explicit else _window_bounds(ctx, version, baseline)
        for start, end in bounds:
            done = store.window(ctx.tables, ctx.endpoint, version, start)
            if done and done.get("complete") and not explicit:
                continue
            win = judge_window(ctx, version, columns, recs, baseline, start, end)
            if win is not None:
                judged.append(win)
        if ctx.pending:
            raise Pending(", ".join(ctx.pending))
        for win in judged:
            store.save_window(ctx.tables, ctx.endpoint, version, win["start"], win)
    if not judged:
        return None
    history = sorted(store.windows(ctx.tables, ctx.endpoint, version), key=lambda w: w["start"])
    last = store.state(ctx.tables, ctx.endpoint).get("last_action_at")
    cooldown = seconds(m.decision.cooldown)
    v = decide.decide([w["verdict"] for w in history], m.decision, now=ctx.now, last_action_at=last,
                      cooldown_seconds=cooldown)
    latest = history[-m.decision.windows:]
    decision: dict[str, Any] = {
        "model": ctx.model, "environment": ctx.environment, "version": version, "verdict": v.verdict,
        "reason": v.reason, "action": m.decision.action if v.verdict == decide.VIOLATION else None,
        "windows": [{"start": w["start"], "end": w["end"], "rows": w["rows"], "verdict": w["verdict"]}
                    for w in latest],
        "figures": judged[-1]["figures"], "window": {"start": judged[-1]["start"], "end": judged[-1]["end"]},
    }
    row = store.record_decision(ctx.tables, ctx.endpoint, decision, now=ctx.now)
    if v.verdict == decide.VIOLATION:
        if store.take_action(ctx.tables, ctx.endpoint, row["id"], now=ctx.now, cooldown_seconds=cooldown):
            row["act"] = True
        else:
            row = store.update_decision(ctx.tables, ctx.endpoint, row["id"], verdict=decide.COOLDOWN, action=None,
                                        reason="another check acted within the cooldown") or row
    return row
