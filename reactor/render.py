"""How the CLI's answers read to a person (``-o json`` prints the data itself): the status summary
(shared.overview), a rollout's timeline with step durations and its analysis runs
(shared.delivery.store), records, and monitor decisions with each figure against its threshold
(shared.monitoring.figures, as the demo prints them).

Listings are tables laid out by ``rich`` (Rich, "Tables", https://rich.readthedocs.io/en/stable/tables.html):
on a terminal they fit its width by wrapping cells, never by cutting them; piped, each row is one
line. ``wide`` adds columns, as ``kubectl get -o wide`` does (Kubernetes, "kubectl get",
https://kubernetes.io/docs/reference/kubectl/generated/kubectl_get/). Times are ISO 8601 in UTC with
their zone (``2026-12-08T02:25:47Z``), in text and, through :func:`iso_times`, in JSON."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from shared.monitoring.figures import figure_text
from shared.overview import alerts

_UNBOUNDED = 100_000  # the width a piped table is laid out in: each row stays one line
_MIN_TEXT = 30  # the least width a table's free-text column gets


def when(epoch: float | None) -> str:
    """An epoch time as ISO 8601 in UTC with its zone, or ``-``."""
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_times(data: Any) -> Any:
    """``data`` with every time (a number under a key ``at`` or ``*_at``, or a ``window``'s ends)
    in the form of :func:`when`: what the CLI's JSON output prints; the app stores epoch seconds."""
    if isinstance(data, list):
        return [iso_times(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if _is_time(key, value):
            out[key] = when(value)
        elif key == "window" and isinstance(value, list):
            out[key] = [when(v) if isinstance(v, int | float) else v for v in value]
        elif key == "window" and isinstance(value, dict):
            out[key] = {k: when(v) if k in ("start", "end") and isinstance(v, int | float) else iso_times(v)
                        for k, v in value.items()}
        else:
            out[key] = iso_times(value)
    return out


def _is_time(key: str, value: Any) -> bool:
    return (key == "at" or key.endswith("_at")) and isinstance(value, int | float) and not isinstance(value, bool)


def table(headers: list[str], rows: list[list[str]], width: int | None = None) -> str:
    """A borderless table, as ``kubectl get`` prints: headers in capitals, columns two spaces
    apart. Every column but the last holds a key fact (an id, a status, a time) and is never cut
    or wrapped; the last, free text, wraps at word boundaries to fit ``width`` (a terminal's), and
    None keeps each row one line. Cells are plain text (never read as Rich markup)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    t = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0), header_style="")
    *keys, text = headers
    widths = [max([len(h), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(keys)]
    for h, w in zip(keys, widths, strict=True):
        t.add_column(h, no_wrap=True, min_width=w)
    t.add_column(text, overflow="fold")
    # Too narrow a terminal gets longer lines (wrapped by the terminal), never a lost column.
    width = max(width or _UNBOUNDED, sum(widths) + 2 * len(widths) + _MIN_TEXT)
    for row in rows:
        t.add_row(*(Text(str(c)) for c in row))
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False, emoji=False,
            force_terminal=False, legacy_windows=False).print(t)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines())


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
        alerting = alerts(e)
        state = "needs attention" if alerting else "ok"
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
        # "!" calls for someone; "·" notes what an operator's own abort or rollback left.
        out += [f"  {'!' if a in alerting else '·'} {a}" for a in e["attention"]]
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


def rollouts(rows: list[dict[str, Any]], wide: bool = False, width: int | None = None) -> str:
    headers = ["ROLLOUT", "MODEL/ENV", "VERSION", "STATUS", "STEP", "CREATED", "TOOK"]
    headers += ["WEIGHT", "CHAMPION", "ENDED", "CAUSED BY"] if wide else []
    body = []
    for r in rows:
        took = seconds((r.get("finished_at") or r.get("updated_at") or 0) - r["created_at"])
        reason = (r.get("reason") or "") if r.get("status") != "done" else ""
        status = "paused" if r.get("paused") and r.get("status") == "running" else r["status"]
        cells = [r["id"], f"{r.get('model')}/{r.get('environment')}", r.get("version") or "?", status, r["step"],
                 when(r["created_at"]), took]
        if wide:
            weight = "-" if r.get("weight") is None else f"{r['weight']}%"
            cells += [weight, r.get("champion") or "-", when(r.get("finished_at")), _caused_by(r.get("caused_by"))]
        body.append([*cells, reason])
    return table([*headers, "REASON"], body, width)


def _caused_by(cause: Any) -> str:
    if isinstance(cause, dict):
        return " ".join(str(v) for v in cause.values() if v not in (None, "")) or "-"
    return str(cause) if cause else "-"


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


def records(rows: list[dict[str, Any]], wide: bool = False, width: int | None = None) -> str:
    headers = ["KIND", "STATUS", "RECEIVED", "WHAT", "KEY", *(["MODEL/ENV", "UPDATED"] if wide else [])]
    body = []
    for r in rows:
        ev, cmd = r.get("event") or {}, r.get("command") or {}
        what = f"{ev.get('kind', '')} v{ev.get('version')}" if ev else cmd.get("command", "")
        outcome = r.get("outcome")
        detail = r.get("reason") or ("; ".join(outcome) if isinstance(outcome, list) else outcome or "")
        cells = [r["kind"], r["status"], when(r.get("received_at")), what, r["key"]]
        if wide:
            source = ev or cmd
            where = "/".join(str(source[k]) for k in ("model", "environment") if source.get(k)) or "-"
            cells += [where, when(r.get("updated_at"))]
        body.append([*cells, str(detail)])
    return table([*headers, "REASON / OUTCOME"], body, width)


def rejections(summary: dict[str, Any]) -> str:
    out = []
    for status, entry in sorted(summary.items()):
        counts = entry.get("counts") or {}
        by_code = ", ".join(f"{c} {n}" for c, n in sorted((counts.get("by_code") or {}).items()))
        out.append(f"HTTP {status}: {counts.get('total', 0)} refused ({by_code}), last {when(counts.get('last_at'))}")
        out += [f"  {when(s.get('at'))}  {s.get('code')}: {s.get('reason')}" for s in entry.get("samples", [])[:10]]
    return "\n".join(out) or "no refused requests"
