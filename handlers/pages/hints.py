"""The next step on a rollout that waits for a person: the exact ``reactor`` commands (reactor/cli.py,
README "Operators' CLI") that act on it, so the page says what to do, not only what happened.

A paused rollout waits for an operator: go on (``resume``), take the next traffic step now
(``promote``), send traffic back to the champion and end it (``abort``), or restore the previous
config and aliases (``rollback``), as Argo Rollouts' paused rollout is promoted or aborted
(Argo Rollouts, "Canary", https://argo-rollouts.readthedocs.io/en/stable/features/canary/). A rollout
that failed or was stopped has left the champion serving: after the cause is fixed, the version
is deployed again, and ``reactor rollout`` shows its timeline and failure."""

from __future__ import annotations

import shlex
from typing import Any

from handlers.pages.layout import esc
from shared import rollouts


def next_steps(model: str, environment: str, rollout: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(command, what it does)`` pairs for ``rollout`` (a row or shared.overview's summary of one,
    whose ``paused`` is the pause's reason); empty when nothing waits for a person."""
    if not rollout:
        return []
    target = f"{shlex.quote(model)} {shlex.quote(environment)}"
    paused = rollout.get("paused")
    status = rollout.get("status")
    if paused and status not in rollouts.TERMINAL:
        return [(f"reactor resume {target} --wait", "go on from the pause"),
                (f"reactor promote {target} --wait", "the next traffic step now"),
                (f'reactor abort {target} --reason "why" --wait', "traffic back to the champion at once"),
                (f'reactor rollback {target} --reason "why" --wait', "restore the previous config and aliases")]
    if status in ("failed", *rollouts.STOPPED):
        version = shlex.quote(str(rollout.get("version")))
        return [(f"reactor rollout {shlex.quote(str(rollout.get('id')))}", "its timeline and why it ended"),
                (f"reactor deploy {target} --version {version} --wait", "try the version again once fixed")]
    return []


def hint_html(model: str, environment: str, rollout: dict[str, Any] | None) -> str:
    """:func:`next_steps` as a short list for a page; empty when there is none."""
    steps = next_steps(model, environment, rollout)
    if not steps:
        return ""
    items = "".join(f"<li><code>{esc(cmd)}</code> <span class=\"muted\">{esc(why)}</span></li>" for cmd, why in steps)
    return f'<div class="hint"><strong>Next step:</strong><ul>{items}</ul></div>'
