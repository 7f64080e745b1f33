"""Fault injection for the local workspace (docs/architecture.md, "The local workspace").

The faults imitate what the Databricks control plane does under load or during incidents,
so that the app's retry and rollback paths can be exercised on one machine (what the SDK retries:
``databricks/sdk/retries.py`` and ``_base_client.py`` in https://github.com/databricks/databricks-sdk-py):

- ``latency_ms``: extra time added to every API call.
- ``provisioning_seconds``: how long a config update stays ``IN_PROGRESS`` before it settles
  (real updates take minutes).
- ``fail_load``: ``"model/version"`` strings whose deployment fails, which ends the update in
  ``UPDATE_FAILED`` with the previous config still serving.
- ``rate_429`` / ``rate_503``: probabilities of answering an API call with
  ``429 REQUEST_LIMIT_EXCEEDED`` (with ``Retry-After: 1``) or ``503 TEMPORARILY_UNAVAILABLE``,
  the two throttling/outage answers the SDK retries.
- ``store_provisioning_seconds``: how long a new Online Feature Store stays ``STARTING`` (and an
  updated one ``UPDATING``) before it is ``AVAILABLE``.
- ``store_unavailable``: online store names held ``STOPPED``; they never become ``AVAILABLE``.
- ``sync_provisioning_seconds``: how long a new sync pipeline provisions its resources.
- ``sync_fail``: online (synced) table names whose syncs fail while listed: the table ends
  ``SYNCED_TABLE_ONLINE_PIPELINE_FAILED`` (``..._OFFLINE_FAILED`` if it never synced) with a message.
- ``statement_pending_seconds``: how long every SQL statement stays ``PENDING`` before it runs,
  as on a warehouse that is starting ("PENDING means waiting for the warehouse").
- ``entity_faults``: per served entity, keyed ``"model/version"`` like ``fail_load``, a dict of
  ``error_rate`` (0..1), ``latency_ms`` (>= 0) and ``bias`` (any finite number; each key optional,
  default 0). They imitate one served model misbehaving behind an endpoint whose other entities
  are healthy, the case a canary analysis must catch:
  ``error_rate`` is the share of that entity's queries answered ``500 INTERNAL_ERROR`` (a model
  server failing; the SDK does not retry a 500 with another message than "Unexpected error"),
  ``latency_ms`` is added to each of its answers (a slower model: the time counts in
  the inference table's ``execution_duration_ms``, "model inference time"), and
  ``bias`` is added to each numeric prediction it answers (a model whose predictions shifted).

The object is shared by the request threads and may be changed at any time, in code
(``ws.faults.rate_503 = 1.0``) or over HTTP (``POST /local/faults``). Random draws come from a
seeded generator so that tests are reproducible (``ws.faults.reseed(7)``).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import invalid_parameter

FIELDS = ("latency_ms", "provisioning_seconds", "fail_load", "rate_429", "rate_503", "store_provisioning_seconds",
          "store_unavailable", "sync_provisioning_seconds", "sync_fail", "statement_pending_seconds", "entity_faults")


@dataclass(frozen=True)
class EntityFault:
    """The faults of one served entity (``Faults.entity_faults``); all zero means healthy."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    bias: float = 0.0


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
    entity_faults: dict[str, dict[str, float]] = field(default_factory=dict)
    seed: int = 0
    _rng: random.Random = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        """Restart the generator used for the 429/503 and per-entity error draws."""
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

    def for_entity(self, entity_name: str, entity_version: str) -> EntityFault:
        """The faults of the served entity of that model version (none unless ``entity_faults`` names it)."""
        return EntityFault(**self.entity_faults.get(f"{entity_name}/{entity_version}", {}))

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
            "entity_faults": {key: dict(value) for key, value in self.entity_faults.items()},
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
        if "entity_faults" in changes:
            clean["entity_faults"] = _entity_faults(changes["entity_faults"])
        seed = changes.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise invalid_parameter("seed must be an integer.")
        for key, value in clean.items():
            setattr(self, key, value)
        if seed is not None:
            self.reseed(seed)


def _entity_faults(value: Any) -> dict[str, dict[str, float]]:
    """``{"model/version": {"error_rate": 0..1, "latency_ms": >= 0, "bias": number}}``, each entry
    stored with all three keys (a missing one is 0)."""
    if not isinstance(value, dict):
        raise invalid_parameter('entity_faults must be an object keyed by "model/version".')
    clean: dict[str, dict[str, float]] = {}
    for key, spec in value.items():
        if "/" not in key:
            raise invalid_parameter(f'entity_faults keys must be "model/version" strings; got {key!r}.')
        if not isinstance(spec, dict):
            raise invalid_parameter(f"entity_faults[{key!r}] must be an object.")
        unknown = set(spec) - {"error_rate", "latency_ms", "bias"}
        if unknown:
            raise invalid_parameter(f"Unknown fields in entity_faults[{key!r}]: {sorted(unknown)}. "
                                    "Known: ['bias', 'error_rate', 'latency_ms'].")
        clean[key] = {
            "error_rate": _number(f"entity_faults[{key!r}].error_rate", spec.get("error_rate", 0.0), low=0.0, high=1.0),
            "latency_ms": _number(f"entity_faults[{key!r}].latency_ms", spec.get("latency_ms", 0.0), low=0.0),
            "bias": _number(f"entity_faults[{key!r}].bias", spec.get("bias", 0.0)),
        }
    return clean


def _number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    # Python's json module reads NaN and Infinity, which would pass every comparison below.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid_parameter(f"{name} must be a finite number.")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise invalid_parameter(f"{name} must be {bounds}; got {value}.")
    return float(value)
