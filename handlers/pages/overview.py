"""``status/page``: every model and environment at a glance, from shared.overview's summary (the
same one ``GET /api/status`` and ``reactor status`` give), so it costs the same bounded reads."""

from __future__ import annotations

from typing import Any

from handlers.pages.hints import hint_html
from handlers.pages.layout import Html, esc, href, page, table, when
from shared.monitoring.figures import figures_line
from shared.tables import TableService

# The steps of one traffic stage (handlers/rollout.py): only these are counted.
_TRAFFIC_STEPS = frozenset({"shift", "wait_shift", "bake", "analyze"})


def state_class(status: str | None, paused: Any = None) -> str:
    if paused:
        return "warn"
    return {"done": "ok", "running": "", "pending": ""}.get(status or "", "bad")


def serving_text(entry: dict[str, Any]) -> str:
    parts = [f"v{esc(s['version'])} {esc(s['traffic'])}%" for s in entry["serving"]]
    return ", ".join(parts) or '<span class="muted">nothing serves</span>'


def rollout_cell(entry: dict[str, Any]) -> str:
    r = entry.get("rollout")
    if not r:
        return '<span class="muted">none yet</span>'
    state = f"paused ({r['paused']})" if r.get("paused") else r.get("status")
    link = href("rollout", endpoint=entry["endpoint"], id=r["id"])
    weight = f" at {esc(r['weight'])}%" if r.get("weight") is not None else ""
    return (f'<a href="{link}">v{esc(r.get("version"))}</a> '
            f'<span class="{state_class(r.get("status"), r.get("paused"))}">{esc(state)}</span>'
            f' <span class="muted">{esc(step_text(r))}{weight}, {esc(when(r.get("updated_at")))}</span>'
            + hint_html(entry["model"], entry["environment"], r))


def step_text(r: dict[str, Any]) -> str:
    """The step for people: its name and, on a traffic step, its number counted from 1 (the row's
    ``stage`` counts from 0)."""
    stage = r.get("stage")
    number = f" {int(stage) + 1}" if isinstance(stage, int) and r.get("step") in _TRAFFIC_STEPS else ""
    return f"step{number} ({r.get('step')})" if number else f"step {r.get('step')}"


def monitor_cell(entry: dict[str, Any]) -> str:
    d = entry.get("monitor")
    if not d:
        return '<span class="muted">no decision yet</span>'
    cls = "ok" if d.get("verdict") == "ok" else "bad"
    return (f'<span class="{cls}">{esc(d.get("verdict"))}</span> <span class="muted">{esc(when(d.get("at")))}</span>'
            f'<br>{esc(figures_line(d))}')


def app_banner(app: dict[str, Any] | None) -> str:
    """The app's own problems (``GET /api/status``'s ``app``, shared.app_state) above everything:
    each names the setting and what it stops, never its value. Empty when all is well."""
    lines = (app or {}).get("attention") or []
    if not lines:
        return ""
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return (f'<section class="banner" role="alert" id="app-problems"><strong class="bad">The app needs its '
            f'settings fixed</strong><ul>{items}</ul></section>')


def render(tables: TableService, summary: list[dict[str, Any]], app: dict[str, Any] | None = None) -> Html:
    rows = []
    for e in summary:
        model = href("model", model=e["model"], environment=e["environment"])
        aliases = ", ".join(f"@{esc(k)} → v{esc(v)}" for k, v in e["aliases"].items())
        attention = "<br>".join(f'<span class="bad">{esc(a)}</span>' for a in e["attention"]) or \
            '<span class="ok">all well</span>'
        rows.append([f'<a href="{model}">{esc(e["model"])}</a>', esc(e["environment"]), esc(e["endpoint"]),
                     serving_text(e), aliases, rollout_cell(e), monitor_cell(e), attention])
    body = table(["model", "environment", "endpoint", "serving (traffic)", "aliases", "last rollout",
                  "last monitor verdict", "attention"], rows, "The policy declares no model.")
    return page("Models and environments", app_banner(app) + body)
