"""``status/rollout``: one rollout's timeline (its row's ``history``, shared.rollouts, with the
time each step took until the next) and its canary analysis runs, each with its phase and every
metric's measurements (shared.delivery.store, Argo Rollouts' AnalysisRun)."""

from __future__ import annotations

from typing import Any

from handlers.pages.hints import hint_html
from handlers.pages.layout import Html, NotFound, duration, esc, href, page, table, when
from handlers.pages.overview import state_class, step_text
from shared import rollouts
from shared.delivery import store as analyses
from shared.tables import TableService


def render(tables: TableService, endpoint: str, rid: str) -> Html:
    entity = rollouts.get(tables, endpoint, rid)
    if entity is None:
        raise NotFound(f"no rollout {rid} on endpoint {endpoint}")
    row = entity.data
    paused = (row.get("paused") or {}).get("reason") if row.get("paused") else None
    state = f"paused: {paused}" if paused else row.get("status")
    facts = [
        ["model", esc(row.get("model"))], ["version", esc(row.get("version"))],
        ["champion before", esc(row.get("champion"))],
        ["state", f'<span class="{state_class(row.get("status"), paused)}">{esc(state)}</span>'],
        ["step", f'{esc(step_text(row))} at {esc(row.get("weight"))}%'],
        ["reason", esc(row.get("reason"))], ["failure", esc(row.get("failure"))],
        ["created", esc(when(row.get("created_at")))], ["finished", esc(when(row.get("finished_at")))],
    ]
    body = table(None, [f for f in facts if f[1]], "")
    body += hint_html(row.get("model") or "", row.get("environment") or "", {**row, "paused": paused})
    body += f"<h2>Timeline</h2>{timeline(row)}<h2>Canary analysis</h2>"
    body += analysis(analyses.for_rollout(tables, endpoint, rid))
    back = href("model", model=row.get("model"), environment=row.get("environment"))
    body += f'<p><a href="{back}">All rollouts of this environment</a></p>' if row.get("environment") else ""
    return page(f"Rollout {rid} of {row.get('model')} v{row.get('version')} on {endpoint}", body)


def timeline(row: dict[str, Any]) -> str:
    """Each recorded transition: an entry names the step the rollout left at ``at`` (shared.rollouts
    ``_transition``), so that step took from the entry before (the first: from the rollout's
    creation). The history keeps the newest 40 entries."""
    history = row.get("history") or []
    starts = [row.get("created_at") or (history[0]["at"] if history else 0), *(h["at"] for h in history[:-1])]
    rows = [[esc(when(h["at"])), esc(h.get("step")), esc(duration(max(0.0, float(h["at"]) - float(start)))),
             esc(h.get("note"))] for h, start in zip(history, starts, strict=True)]
    return table(["left at", "step", "took", "note"], rows, "No step recorded yet.")


def analysis(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return '<p class="muted">No analysis run (a direct rollout, or no step analysed yet).</p>'
    out = []
    for run in runs:
        cls = {"Successful": "ok", "Running": "", "Inconclusive": "warn"}.get(run.get("phase"), "bad")
        window = run.get("window") or [None, None]
        out.append(f'<h3>Step {esc(_from_one(run.get("stage")))} at {esc(run.get("weight"))}%, '
                   f'run {esc(run.get("run"))}: '
                   f'<span class="{cls}">{esc(run.get("phase"))}</span></h3>'
                   f'<p class="muted">window {esc(when(window[0]))} to {esc(when(window[1]))}; '
                   f'v{esc(run.get("version"))} against v{esc(run.get("champion"))}</p>')
        rows = [[esc(name), esc(m.get("phase")), esc(when(x.get("at"))), esc(x.get("phase")),
                 esc("" if x.get("value") is None else f"{x['value']:.4g}"), esc(x.get("detail"))]
                for name, m in (run.get("metrics") or {}).items() for x in (m.get("measurements") or [{}])]
        out.append(table(["metric", "metric phase", "measured", "verdict", "value", "detail"], rows,
                         "No measurement yet."))
    return "".join(out)


def _from_one(stage: Any) -> Any:
    """A stored stage (counted from 0) as people count steps, from 1."""
    return stage + 1 if isinstance(stage, int) else stage
