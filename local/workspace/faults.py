"""Fault injection for the local workspace (DESIGN.md, "The local workspace").

The faults imitate what the Databricks control plane does under load or during incidents,
so that the app's retry and rollback paths can be exercised on one machine:

- ``latency_ms``: extra time added to every API call.
- ``provisioning_seconds``: how long a config update stays ``IN_PROGRESS`` before it settles
  (real updates take minutes; reference §1.4).
- ``fail_load``: ``"model/version"`` strings whose deployment fails, which ends the update in
  ``UPDATE_FAILED`` with the previous config still serving (reference §1.4).
- ``rate_429`` / ``rate_503``: probabilities of answering an API call with
  ``429 REQUEST_LIMIT_EXCEEDED`` (with ``Retry-After: 1``) or ``503 TEMPORARILY_UNAVAILABLE``,
  the two throttling/outage answers the SDK retries (reference §8, "Emulator recipes").
- ``store_provisioning_seconds``: how long a new Online Feature Store stays ``STARTING`` (and an
  updated one ``UPDATING``) before it is ``AVAILABLE`` (reference §2.2).
- ``store_unavailable``: online store names held ``STOPPED``; they never become ``AVAILABLE``.
- ``sync_provisioning_seconds``: how long a new sync pipeline provisions its resources.
- ``sync_fail``: online (synced) table names whose syncs fail while listed: the table ends
  ``SYNCED_TABLE_ONLINE_PIPELINE_FAILED`` (``..._OFFLINE_FAILED`` if it never synced) with a message.
- ``statement_pending_seconds``: how long every SQL statement stays ``PENDING`` before it runs,
  as on a warehouse that is starting (reference §4.2: "PENDING means waiting for the warehouse").

The object is shared by the request threads and may be changed at any time, in code
(``ws.faults.rate_503 = 1.0``) or over HTTP (``POST /local/faults``). Random draws come from a
seeded generator so that tests are reproducible (``ws.faults.reseed(7)``).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid_parameter

FIELDS = ("latency_ms", "provisioning_seconds", "fail_load", "rate_429", "rate_503", "store_provisioning_seconds",
          "store_unavailable", "sync_provisioning_seconds", "sync_fail", "statement_pending_seconds")


@dataclass
class Faults:
    latency_ms: float = 0.0
    provisioning_seconds: float = 0.5
    fail_load: list[str] = field(default_factory=list)
    rate_429: float = 0.0
    rate_503: float = 0.0
    store_provisioning_seconds: float = 0.3
    store_unavailable: list[str] = field(default_factory=list)
    sync_provisioning_seconds: float = 0.1
    sync_fail: list[str] = field(default_factory=list)
    statement_pending_seconds: float = 0.0
    seed: int = 0
    _rng: random.Random = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        """Restart the generator used for the 429/503 draws."""
        with self._lock:
            self.seed = seed
            self._rng.seed(seed)

    def roll(self, probability: float) -> bool:
        """True with the given probability (0 never draws, 1 always hits)."""
        if probability <= 0:
            return False
        if probability >= 1:
            return True
        with self._lock:
            return self._rng.random() < probability

    def fails_load(self, entity_name: str, entity_version: str) -> bool:
        return f"{entity_name}/{entity_version}" in set(self.fail_load)

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "provisioning_seconds": self.provisioning_seconds,
            "fail_load": list(self.fail_load),
            "rate_429": self.rate_429,
            "rate_503": self.rate_503,
            "store_provisioning_seconds": self.store_provisioning_seconds,
            "store_unavailable": list(self.store_unavailable),
            "sync_provisioning_seconds": self.sync_provisioning_seconds,
            "sync_fail": list(self.sync_fail),
            "statement_pending_seconds": self.statement_pending_seconds,
            "seed": self.seed,
        }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update (the body of ``POST /local/faults``), validating every field first."""
        if not isinstance(changes, dict):
            raise invalid_parameter("The faults body must be a JSON object.")
        unknown = set(changes) - {*FIELDS, "seed"}
        if unknown:
            raise invalid_parameter(f"Unknown fault fields: {sorted(unknown)}. Known: {[*FIELDS, 'seed']}.")
        clean: dict[str, Any] = {}
        for key in ("latency_ms", "provisioning_seconds", "store_provisioning_seconds", "sync_provisioning_seconds",
                    "statement_pending_seconds"):
            if key in changes:
                clean[key] = _number(key, changes[key], low=0.0)
        for key in ("rate_429", "rate_503"):
            if key in changes:
                clean[key] = _number(key, changes[key], low=0.0, high=1.0)
        if "fail_load" in changes:
            value = changes["fail_load"]
            if not isinstance(value, list) or not all(isinstance(v, str) and "/" in v for v in value):
                raise invalid_parameter('fail_load must be a list of "model/version" strings.')
            clean["fail_load"] = list(value)
        for key in ("store_unavailable", "sync_fail"):
            if key in changes:
                value = changes[key]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise invalid_parameter(f"{key} must be a list of names.")
                clean[key] = list(value)
        seed = changes.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise invalid_parameter("seed must be an integer.")
        for key, value in clean.items():
            setattr(self, key, value)
        if seed is not None:
            self.reseed(seed)


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_parameter(f"{name} must be a number.")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise invalid_parameter(f"{name} must be {bounds}; got {value}.")
    return float(value)
