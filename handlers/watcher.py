"""Registry watcher (timer): notices what no webhook told us.

Unity Catalog models have no registry webhooks and a webhook can be lost, so for every model
in the policy the watcher reads versions and aliases through ``MlflowClient`` and enqueues a
``reconcile`` when they differ from the stored high-water mark (DESIGN.md "Registry watcher").
It also re-sends the current step of any rollout that has not moved for a long time, which
repairs a rollout whose message was lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

from handlers.deps import Deps
from handlers.rollout import kick
from shared import rollouts
from shared.log import correlated, step
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.registry import aliases, latest_versions

WATERMARKS = "watermarks"


def tick(deps: Deps) -> dict[str, int]:
    with correlated(f"watch-{uuid.uuid4()}"):
        noticed = _watch_registry(deps)
        repaired = _repair_stalled(deps)
        step("watcher.tick", noticed=noticed, repaired=repaired)
        return {"noticed": noticed, "repaired": repaired}


def _watch_registry(deps: Deps) -> int:
    client = deps.registry()
    noticed = 0
    for mp in deps.policy().models:
        try:
            versions = latest_versions(client, mp.name)
            mark = {
                "latest": versions[-1].version if versions else None,
                "status": versions[-1].status if versions else None,
                "aliases": aliases(client, mp.name),
            }
        except Exception as exc:  # one unreachable model must not stop the others
            step("watcher.error", logging.WARNING, model=mp.name, error=f"{type(exc).__name__}: {exc}")
            continue
        digest = hashlib.sha256(json.dumps(mark, sort_keys=True).encode()).hexdigest()[:16]
        stored = deps.tables.get(WATERMARKS, "registry", mp.name)
        if stored and stored.data.get("digest") == digest:
            continue
        # Enqueue before moving the mark: a crash in between repeats a harmless reconcile.
        enqueue(deps.queues, COMMANDS_QUEUE, {
            "schema_version": 1, "command": "reconcile", "model": mp.name,
            "reason": f"watcher: registry changed (latest {mark['latest']})",
            "correlation_id": f"watch-{mp.name}-{digest}",
        })
        deps.tables.upsert(WATERMARKS, "registry", mp.name, {"digest": digest, "mark": mark, "at": deps.clock()})
        step("watcher.changed", model=mp.name, **mark)
        noticed += 1
    return noticed


def _repair_stalled(deps: Deps) -> int:
    """A live rollout that has not advanced for ``stall`` seconds lost its message: send it again."""
    stall = max(300.0, 4 * deps.settings.backoff_cap_seconds)
    now = deps.clock()
    repaired = 0
    for endpoint, lease in rollouts.all_endpoints(deps.tables).items():
        rid = lease.get("active")
        entity = rollouts.get(deps.tables, endpoint, rid) if rid else None
        if entity and entity.data["status"] not in rollouts.TERMINAL and now - entity.data["updated_at"] > stall:
            kick(deps, endpoint, rid)
            step("watcher.repaired", logging.WARNING, rollout=rid, endpoint=endpoint, step=entity.data["step"])
            repaired += 1
    return repaired
