"""Registry watcher (timer): notices what no webhook told us.

Unity Catalog models have no registry webhooks and a webhook can be lost, so for every model
in the policy the watcher reads the newest version and the aliases and submits a ``reconcile``
when they differ from the stored high-water mark (docs/architecture.md "Registry watcher"). The newest
version is read from the mark on (``shared.registry.newest_version``): a tick reads what is
newer than the mark, not the model's whole history.
The command is recorded before the mark moves, so a message lost in a crash is redriven by
the repair sweep (handlers/repair.py) rather than forgotten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

from handlers.commands import submit
from handlers.deps import Deps
from shared import journal
from shared.app_state import note_denied
from shared.log import correlated, step
from shared.registry import aliases, newest_version

WATERMARKS = "watermarks"


def tick(deps: Deps) -> dict[str, int]:
    with correlated(f"watch-{uuid.uuid4()}"):
        noticed = _watch_registry(deps)
        step("watcher.tick", noticed=noticed)
        return {"noticed": noticed}


def _watch_registry(deps: Deps) -> int:
    client = deps.registry()
    noticed = 0
    for mp in deps.policy().models:
        stored = deps.tables.get(WATERMARKS, "registry", mp.name)
        seen = (stored.data.get("seen") or stored.data["mark"].get("latest")) if stored else None
        try:
            newest = newest_version(client, mp.name, seen)
            mark = {
                "latest": newest.version if newest else None,
                "status": newest.status if newest else None,
                "aliases": aliases(client, mp.name),
            }
        except Exception as exc:  # one unreachable model must not stop the others
            note_denied(deps.tables, exc, f"registry watch of {mp.name}", deps.clock())
            step("watcher.error", logging.WARNING, model=mp.name, error=f"{type(exc).__name__}: {exc}")
            continue
        digest = hashlib.sha256(json.dumps(mark, sort_keys=True).encode()).hexdigest()[:16]
        # The highest number ever read, kept when the newest is deleted: reads go on from it.
        numbers = [int(n) for n in (seen, mark["latest"]) if n]
        seen = str(max(numbers)) if numbers else None
        if stored and stored.data.get("digest") == digest:
            continue
        # Submit before moving the mark: a crash in between repeats a harmless reconcile.
        cid = f"watch-{digest}"
        submit(deps, journal.key("watch", f"{mp.name}|{digest}"), {
            "schema_version": 1, "command": "reconcile", "model": mp.name,
            "reason": f"watcher: registry changed (latest {mark['latest']})", "correlation_id": cid,
        }, cid)
        deps.tables.upsert(WATERMARKS, "registry", mp.name,
                           {"digest": digest, "mark": mark, "seen": seen, "at": deps.clock()})
        step("watcher.changed", model=mp.name, **mark)
        noticed += 1
    return noticed
