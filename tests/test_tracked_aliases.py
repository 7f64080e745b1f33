"""An alias another environment tracks moves only when the rollout that sets it is done.

``staging`` tracks the newest version and sets ``@Staging`` (a canary); ``prod`` tracks
``@Staging``. While staging's canary, past its promote, takes all traffic and bakes, a reconcile
of prod must still see the previous version at ``@Staging``: a failure in staging's last shift
would otherwise already have sent the version to prod. A rollout started by reconcile records
the alias it followed.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared import rollouts
from tests.engine import MODEL, POLICY, Driver, without_rollback_window

STAGING_EP = "fare-stg"
PROD_EP = "fare-ep"


def _two_environments(d: Driver, tmp: Path) -> None:
    base = POLICY["models"][0]["environments"]["prod"]
    envs = {
        "staging": without_rollback_window({**base, "endpoint": STAGING_EP, "track": "latest",
                    "aliases": {"champion": ["Staging"]},
                    "strategy": {"kind": "canary", "bake": "10m",
                                 "steps": [{"weight": 50, "bake": "1m", "analysis": False}]}}),
        "prod": without_rollback_window({**base, "endpoint": PROD_EP, "track": "@Staging", "aliases": ["Champion"]}),
    }
    (tmp / "policy.json").write_text(json.dumps({**POLICY, "models": [{"name": MODEL, "environments": envs}]}))


def _staging(d: Driver) -> list[dict]:
    return rollouts.for_endpoint(d.raw_tables, STAGING_EP)


def _drain(d: Driver, watch) -> None:
    """Run every message, moving the clock to the next one; ``watch`` looks after each step."""
    for _ in range(2000):
        if d.step():
            watch()
            continue
        nxt = d.next_visible()
        if nxt is None:
            return
        d.clock.now = max(d.clock.now, nxt + 0.001)
    raise AssertionError("the rollouts did not settle")


def test_a_tracked_alias_moves_when_the_rollout_is_done_not_at_its_promote(tmp_path):
    d = Driver(tmp_path)
    _two_environments(d, tmp_path)
    v1 = d.registry.register()
    d.command({"command": "reconcile", "model": MODEL, "environment": "staging"})
    _drain(d, lambda: None)
    assert d.registry.aliases["Staging"] == v1
    d.command({"command": "reconcile", "model": MODEL, "environment": "prod"})
    _drain(d, lambda: None)
    assert d.serving_api.serving(PROD_EP) == [v1]

    v2 = d.registry.register()
    d.command({"command": "reconcile", "model": MODEL, "environment": "staging"})
    seen: list[str] = []

    def watch() -> None:
        live = [r for r in _staging(d) if r["version"] == v2 and r["status"] not in rollouts.TERMINAL]
        if live and any(h["step"] == "promote" for h in live[0]["history"]):
            # Past its promote, taking all traffic or baking: prod reconciles now (its watcher, an
            # alias webhook of another alias, an operator) and must not be sent v2 yet.
            seen.append(d.registry.aliases.get("Staging"))
            if len(seen) == 1:
                d.command({"command": "reconcile", "model": MODEL, "environment": "prod"})

    _drain(d, watch)
    assert seen and set(seen) == {v1}, seen
    ended = [r for r in _staging(d) if r["version"] == v2]
    assert [r["status"] for r in ended] == ["done"] and d.registry.aliases["Staging"] == v2
    assert "Staging" in ended[0]["aliases_moved"]
    early = [r for r in rollouts.for_endpoint(d.raw_tables, PROD_EP) if r["version"] == v2]
    assert not early, early  # prod's reconcile during the bake found @Staging on v1, which serves

    d.command({"command": "reconcile", "model": MODEL, "environment": "prod"})
    _drain(d, lambda: None)
    assert d.serving_api.serving(PROD_EP) == [v2]
    prod = [r for r in rollouts.for_endpoint(d.raw_tables, PROD_EP) if r["version"] == v2]
    assert prod[0]["requested"] == {"version": v2, "alias": "Staging"}, prod[0]["requested"]
