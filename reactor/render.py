"""How the CLI's answers read to a person (``--json`` prints the data itself): the status summary
(shared.overview), a rollout's timeline with step durations and its analysis runs
(shared.delivery.store), records, and monitor decisions with each figure against its threshold
(shared.monitoring.figures, as the demo prints them)."""

from __future__ import annotations

import time
from typing import Any

from shared.monitoring.figures import figure_text


def when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) if epoch else "-"


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f}m" if value < 7200 else f"{value / 3600:.1f}h"


def _served(entry: dict[str, Any]) -> str:
    return ", ".join(f"v{s['version']} {s['traffic']}%" for s in entry["serving"]) or "nothing"


def _rollout_line(r: dict[str, Any]) -> str:
    at = f" at {r['weight']}%" if r.get("weight") is not None and r.get("status") not in ("done",) else ""
    paused = f", paused: {r['paused']}" if r.get("paused") else ""
    reason = f": {r['reason']}" if r.get("reason") and r.get("status") != "done" else ""
    since = when(r.get("created_at"))
    return f"{r['id']} v{r.get('version') or '?'} {r['status']} ({r['step']}{at}{paused}) since {since}{reason}"


def decision_lines(d: dict[str, Any], indent: str = "") -> list[str]:
    window = d.get("window") or {}
    span = f" window {when(window.get('start'))} to {when(window.get('end'))[11:]}" if window else ""
    lines = [f"{indent}v{d.get('version') or '?'} {d['verdict']} at {when(d.get('at'))}{span}: {d.get('reason')}"]
    lines += [f"{indent}  {figure_text(f)}" for f in d.get("figures") or []]
    if d.get("action"):
        lines.append(f"{indent}  action: {d['action']}")
    return lines


def status(entries: list[dict[str, Any]]) -> str:
    out = []
    for e in entries:
        state = "needs attention" if e["attention"] else "ok"
        out.append(f"{e['model']}/{e['environment']}  endpoint {e['endpoint']}  {state}")
        out.append(f"  serving   {_served(e)}")
        aliases = ", ".join(f"@{a} v{v}" for a, v in sorted(e["aliases"].items()))
        out.append(f"  aliases   {aliases or '-'}")
        out.append(f"  rollout   {_rollout_line(e['rollout']) if e['rollout'] else '-'}")
        if e.get("queued"):
            out.append(f"  queued    {e['queued']['id']} v{e['queued'].get('version') or '?'}")
        monitor = decision_lines(e["monitor"], " " * 12) if e["monitor"] else ["-"]
        out.append(f"  monitor   {monitor[0].strip()}")
        out += monitor[1:]
        out += retraining_lines(e.get("retraining"))
        out += [f"  ! {a}" for a in e["attention"]]
    return "\n".join(out)


def retraining_lines(r: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """The last action taken on an environment (shared.overview.retraining): what and when, the
    retraining run with its state and result, the version it registered and that version's rollout."""
    if not r:
        return []
    by = f"decision {r['decision']}" if r.get("decision") else f"record {r['record']}" if r.get("record") else ""
    lines = [f"{indent}{'retrain':<10}{r.get('action') or 'no action'} at {when(r.get('at'))}"
             + (f" ({by})" if by else "")]
    run = r.get("run")
    if run:
        result = f"/{run['result']}" if run.get("result") else ""
        message = f": {run['message']}" if run.get("message") else ""
        lines.append(f"{indent}{'':<10}run {run.get('run_id') or '-'} {run.get('state')}{result}{message}")
    elif r.get("action") == "retrain":
        lines.append(f"{indent}{'':<10}run not launched yet")
    if r.get("version"):
        ro = r.get("rollout") or {}
        lines.append(f"{indent}{'':<10}registered v{r['version']}: rollout {ro.get('id')} {ro.get('status')}")
    elif run and run.get("result") == "SUCCESS":
        lines.append(f"{indent}{'':<10}registered: no version rolled out yet")
    return lines


def progress(rid: str, version: str | None, text: str) -> str:
    """One line of ``--wait``'s progress about a rollout."""
    return f"rollout {rid} v{version or '?'} {text}"


def rollouts(rows: list[dict[str, Any]]) -> str:
    out = [f"{'ROLLOUT':<24}  {'MODEL/ENV':<28}  {'VERSION':>7}  {'STATUS':<11}  {'STEP':<13}  {'CREATED':<19}  "
           f"{'TOOK':>6}  REASON"]
    for r in rows:
        took = seconds((r.get("finished_at") or r.get("updated_at") or 0) - r["created_at"])
        reason = (r.get("reason") or "") if r.get("status") != "done" else ""
        where = f"{r.get('model')}/{r.get('environment')}"
        out.append(f"{r['id']:<24}  {where:<28}  {r.get('version') or '?':>7}  {r['status']:<11}  {r['step']:<13}  "
                   f"{when(r['created_at']):<19}  {took:>6}  {reason[:120]}")
    return "\n".join(out)


def timeline(row: dict[str, Any]) -> list[tuple[float, float, str, str]]:
    """(offset from the start, time in that step, step, note) per history entry: a note ends the
    step it names, so its duration runs from the previous entry (or the rollout's creation)."""
    start = row["created_at"]
    prev, out = start, []
    for h in row.get("history") or []:
        out.append((h["at"] - start, h["at"] - prev, h["step"], h["note"]))
        prev = h["at"]
    return out


def rollout(got: dict[str, Any]) -> str:
    r = got["rollout"]
    end = r.get("finished_at")
    out = [f"rollout {r['id']}  {r.get('model')}/{r.get('environment')}  endpoint {r['endpoint']}  "
           f"version {r.get('version') or '?'}",
           f"  status    {r['status']} (step {r['step']})" + (f", paused: {r['paused']['reason']}" if r.get("paused")
                                                              else ""),
           f"  created   {when(r['created_at'])}" + (f"  ended {when(end)}  took {seconds(end - r['created_at'])}"
                                                      if end else ""),
           f"  champion  v{r.get('champion') or '-'}"]
    if r.get("status") not in ("done", "running", "pending") and r.get("reason"):
        out.append(f"  reason    {r['reason']}")
    if r.get("failure") and r.get("failure") != r.get("reason"):
        out.append(f"  failure   {r['failure']}")
    out.append("  timeline")
    out += [f"    +{seconds(off):>7}  {step:<13} {seconds(took):>7}  {note}" for off, took, step, note in timeline(r)]
    if got.get("analyses"):
        out.append("  analysis")
    for a in got.get("analyses") or []:
        window = a.get("window") or [None, None]
        span = f"{when(window[0])} to {when(window[1])[11:]}"
        out.append(f"    stage {a['stage']} run {a['run']} at {a['weight']}%: {a['phase']}  window {span}")
        for name, m in (a.get("metrics") or {}).items():
            last = m["measurements"][-1] if m.get("measurements") else None
            value = "" if not last or last.get("value") is None else f" = {last['value']:.4g}"
            detail = f"{value} ({last['detail']})" if last else " (no measurement)"
            out.append(f"      {name:<17} {m['phase']:<12}{detail}")
    return "\n".join(out)


def records(rows: list[dict[str, Any]]) -> str:
    out = [f"{'KIND':<8}  {'STATUS':<10}  {'RECEIVED':<19}  {'WHAT':<18}  {'KEY':<40}  REASON / OUTCOME"]
    for r in rows:
        ev, cmd = r.get("event") or {}, r.get("command") or {}
        what = f"{ev.get('kind', '')} v{ev.get('version')}" if ev else cmd.get("command", "")
        outcome = r.get("outcome")
        detail = r.get("reason") or ("; ".join(outcome) if isinstance(outcome, list) else outcome or "")
        out.append(f"{r['kind']:<8}  {r['status']:<10}  {when(r.get('received_at')):<19}  {what[:18]:<18}  "
                   f"{r['key']:<40}  {str(detail)[:160]}")
    return "\n".join(out)


def rejections(summary: dict[str, Any]) -> str:
    out = []
    for status, entry in sorted(summary.items()):
        counts = entry.get("counts") or {}
        by_code = ", ".join(f"{c} {n}" for c, n in sorted((counts.get("by_code") or {}).items()))
        out.append(f"HTTP {status}: {counts.get('total', 0)} refused ({by_code}), last {when(counts.get('last_at'))}")
        out += [f"  {when(s.get('at'))}  {s.get('code')}: {s.get('reason')}" for s in entry.get("samples", [])[:10]]
    return "\n".join(out) or "no refused requests"
