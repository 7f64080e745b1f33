"""``status/model``: one model's environment: its summary (shared.overview), its rollouts one
page at a time, and drift per figure (each column's check, the prediction's, the performance
checks) over the newest monitor decisions, as plots against the threshold.

Bounded whatever the history: the rollouts are one page of at most ``limit`` rows, newest first
across pages (``continuation`` goes on), as ``GET /api/rollouts?endpoint=`` pages them: one page of
the endpoint's time index and a point read per rollout (shared.rollouts L9), and the plots one
page of ``PLOT_WINDOWS`` decisions (the ``decisions`` partition is newest first), with a link to
the older ones (``older``, that page's continuation token)."""

from __future__ import annotations

from typing import Any

from handlers.pages.layout import Html, NotFound, esc, href, page, table, when
from handlers.pages.overview import monitor_cell, rollout_cell, serving_text, state_class, step_text
from handlers.pages.plots import figure_plot
from shared import overview, rollouts
from shared.monitoring import store as monitor_store
from shared.policy import Policy
from shared.tables import TableService

PLOT_WINDOWS = 48  # two days of hourly windows per page of plots


def render(tables: TableService, policy: Policy, model: str, environment: str, *, limit: int,
           continuation: str | None, older: str | None) -> Html:
    mp = next((m for m in policy.models if m.name == model), None)
    env = mp.environments.get(environment) if mp else None
    if env is None:
        raise NotFound(f"the policy has no model {model} with an environment {environment}")
    entry = overview.environment_status(tables, model, environment, env)
    facts = [["endpoint", esc(env.endpoint)], ["serving (traffic)", serving_text(entry)],
             ["aliases", ", ".join(f"@{esc(k)} → v{esc(v)}" for k, v in entry["aliases"].items())],
             ["last rollout", rollout_cell(entry)], ["last monitor verdict", monitor_cell(entry)],
             ["attention", "<br>".join(f'<span class="bad">{esc(a)}</span>' for a in entry["attention"])
              or '<span class="ok">all well</span>']]
    body = table(None, facts, "")
    body += "<h2>Drift over recent windows</h2>" + drift(tables, model, environment, env.endpoint, older)
    body += "<h2>Rollouts</h2>" + rollout_list(tables, model, environment, env.endpoint, limit, continuation)
    return page(f"{model} · {environment}", body)


def rollout_list(tables: TableService, model: str, environment: str, endpoint: str, limit: int,
                 continuation: str | None) -> str:
    rows, _, token = rollouts.page(tables, endpoint, limit=limit, continuation=continuation)
    cells = [[f'<a href="{href("rollout", endpoint=endpoint, id=r["id"])}">{esc(r["id"])}</a>',
              esc(r.get("version")),
              f'<span class="{state_class(r.get("status"), r.get("paused"))}">'
              f'{esc("paused" if r.get("paused") else r.get("status"))}</span>',
              esc(step_text(r)), esc(when(r.get("created_at"))), esc(when(r.get("finished_at"))),
              esc(r.get("reason"))] for r in rows]
    out = table(["rollout", "version", "state", "step", "created", "finished", "reason"], cells,
                "No rollout on this page.")
    if token:
        nxt = href("model", model=model, environment=environment, limit=limit, continuation=token)
        out += f'<p><a class="next" href="{nxt}">Next {limit} rollouts</a></p>'
    return out


def series(decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per figure name, its threshold, direction and, per version judged, its points oldest first
    (``lines``), from decisions newest first. The monitor makes one decision per version it judged
    (shared.monitoring.store), so a canary's two versions are two lines, never one."""
    out: dict[str, dict[str, Any]] = {}
    for d in reversed(decisions):
        at = (d.get("window") or {}).get("end") or d.get("at")
        version = str(d.get("version"))
        for f in d.get("figures") or []:
            s = out.setdefault(f["check"], {"threshold": f["threshold"], "direction": f["direction"], "lines": {}})
            # The newest decision's threshold is the one in force.
            s.update(threshold=f["threshold"], direction=f["direction"])
            s["lines"].setdefault(version, []).append({"at": at, "value": f.get("value"), "verdict": f.get("verdict")})
    return out


def drift(tables: TableService, model: str, environment: str, endpoint: str, older: str | None) -> str:
    got = monitor_store.decisions_page(tables, endpoint, limit=PLOT_WINDOWS, continuation=older)
    decisions = [e.data for e in got.entities]
    if not decisions:
        return '<p class="muted">No monitor decision on this page.</p>'
    newest, oldest = decisions[0].get("at"), decisions[-1].get("at")
    out = (f'<p class="muted">{len(decisions)} decisions, {esc(when(oldest))} to {esc(when(newest))}; '
           f'one line per version; red dots violate.</p>')
    out += "".join(figure_plot(name, s["lines"], float(s["threshold"]), s["direction"])
                   for name, s in series(decisions).items())
    if got.continuation:
        link = href("model", model=model, environment=environment, older=got.continuation)
        out += f'<p><a class="older" href="{link}">Older windows</a></p>'
    return out
