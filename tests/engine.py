"""The rollout engine in one process, without HTTP: the real handlers over real SQLite state
and queues, a clock the test moves, and in-memory stand-ins for Model Serving and the
registry that behave as the documented APIs do (asynchronous config updates, UPDATE_FAILED
keeping the old config, 404 for a missing endpoint, 409 for an update while one runs).

``Driver`` plays the Functions host: it receives messages, runs the handler, deletes the
message on success, makes it visible again on failure and moves it to the poison queue after
``MAX_DEQUEUE`` attempts (Microsoft Learn, "Azure Queue storage trigger for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger), and it can
drop a received message as a killed host does (the message stays invisible for the receive timeout).
``FaultyTables`` and ``FaultyQueues`` fail a chosen storage write or enqueue, before or after
it took effect (a timeout that hides a success).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from handlers import commands, operators, repair, rollout, webhook
from handlers.deps import Deps
from handlers.http_types import Request, Response
from shared import journal, rollouts, serving
from shared.queues import COMMANDS_QUEUE, POISON_SUFFIX, ROLLOUT_QUEUE, QueueService, ReceivedMessage, decode_content
from shared.queues.sqlite import SqliteQueueService
from shared.settings import Settings
from shared.signatures import mlflow_signature
from shared.tables import Entity, Op, Page, TableService
from shared.tables.sqlite import SqliteTableService

SECRET = "engine-secret"
MODEL = "fare"
ENDPOINT = "fare-ep"
MAX_DEQUEUE = 5
RECEIVE_TIMEOUT = 600.0
QUEUES = (ROLLOUT_QUEUE, COMMANDS_QUEUE, COMMANDS_QUEUE + POISON_SUFFIX, ROLLOUT_QUEUE + POISON_SUFFIX)


class StorageFault(RuntimeError):
    """An injected storage failure."""


class Clock:
    """Time moves when the test moves it, and by a microsecond at every reading, as it does
    while a host works: if it stood still, everything one run of the host did would carry one
    timestamp, and rows ordered by time (rollouts by when they ended) would come in the order of
    their ids, which are hashes of random message ids."""

    TICK = 1e-6

    def __init__(self) -> None:
        self.now = time.time()
        self._lock = threading.Lock()  # the concurrency tests read it from several threads

    def __call__(self) -> float:
        with self._lock:
            self.now += self.TICK
            return self.now


@dataclass
class Faults:
    """Fail write number ``at`` (counting every table write and enqueue from 1)."""

    at: int | None = None
    after: bool = False  # the write happens, then the caller sees an error
    count: int = 0
    fired: list[str] = field(default_factory=list)

    def write(self, what: str) -> bool:
        """Count one write; True if it must fail (raised by the caller before or after)."""
        self.count += 1
        if self.count == self.at:
            self.fired.append(what)
            return True
        return False


class FaultyTables(TableService):
    def __init__(self, inner: TableService, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    def _write(self, what: str, fn, *args):
        fail = self.faults.write(what)
        if fail and not self.faults.after:
            raise StorageFault(f"injected before {what}")
        out = fn(*args)
        if fail:
            raise StorageFault(f"injected after {what}")
        return out

    def insert(self, table, partition_key, row_key, data):
        return self._write(f"insert {table}", self.inner.insert, table, partition_key, row_key, data)

    def get(self, table, partition_key, row_key):
        return self.inner.get(table, partition_key, row_key)

    def upsert(self, table, partition_key, row_key, data):
        return self._write(f"upsert {table}", self.inner.upsert, table, partition_key, row_key, data)

    def update(self, table, entity: Entity):
        return self._write(f"update {table}", self.inner.update, table, entity)

    def delete(self, table, entity: Entity):
        return self._write(f"delete {table}", self.inner.delete, table, entity)

    def transact(self, table, partition_key, ops: list[Op]):
        return self._write(f"transact {table}", self.inner.transact, table, partition_key, ops)

    def query_page(self, table, partition_key=None, *, limit=1000, continuation=None, rows=None) -> Page:
        return self.inner.query_page(table, partition_key, limit=limit, continuation=continuation, rows=rows)


class FaultyQueues(QueueService):
    def __init__(self, inner: QueueService, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    def send(self, queue, content, *, visibility_delay=0.0):
        fail = self.faults.write(f"send {queue}")
        if fail and not self.faults.after:
            raise StorageFault(f"injected before send {queue}")
        out = self.inner.send(queue, content, visibility_delay=visibility_delay)
        if fail:
            raise StorageFault(f"injected after send {queue}")
        return out

    def receive(self, queue, *, max_messages, visibility_timeout):
        return self.inner.receive(queue, max_messages=max_messages, visibility_timeout=visibility_timeout)

    def delete(self, queue, message_id, pop_receipt):
        self.inner.delete(queue, message_id, pop_receipt)

    def update_visibility(self, queue, message_id, pop_receipt, visibility_timeout):
        return self.inner.update_visibility(queue, message_id, pop_receipt, visibility_timeout)

    def count(self, queue):
        return self.inner.count(queue)

    def peek(self, queue, max_messages=32):
        return self.inner.peek(queue, max_messages)


@dataclass
class _Endpoint:
    config: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None
    reads_left: int = 0
    failed_message: str = ""


class FakeServing:
    """``w.serving_endpoints`` over the SDK's own wire format. An update stays IN_PROGRESS for
    ``settle_reads`` reads; a version in ``fails_load`` ends UPDATE_FAILED with the previous
    config serving; a version in ``bad_answers`` answers a negative fare. With ``denied``, every
    write answers 403 PERMISSION_DENIED, as for an identity without CAN_MANAGE on the endpoint."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.endpoints: dict[str, _Endpoint] = {}
        self.fails_load: set[str] = set()
        self.bad_answers: set[str] = set()
        self.denied = False
        self.settle_reads = 1
        self.violations: list[str] = []
        self.writes: list[dict[str, Any]] = []  # every config written, in order
        self.lock = threading.Lock()

    def _require(self, name: str) -> _Endpoint:
        from databricks.sdk.errors import NotFound

        ep = self.endpoints.get(name)
        if ep is None:
            raise NotFound(f"Serving endpoint {name} does not exist")
        return ep

    def _writable(self, name: str) -> None:
        from databricks.sdk.errors import PermissionDenied

        if self.denied:
            raise PermissionDenied(f"User does not have CAN_MANAGE permission on serving endpoint {name}.",
                                   error_code="PERMISSION_DENIED")

    def _written(self, name: str) -> None:
        # Invariant L2: only the rollout holding the endpoint's lease writes it. Kept, not raised:
        # the step would take an exception for Databricks trouble and retry.
        active = rollouts.lease(self.driver.raw_tables, name).get("active")
        if self.driver.current != active:
            self.violations.append(f"rollout {self.driver.current} wrote {name}; the lease holder was {active}")

    def get(self, name: str):
        from databricks.sdk.service.serving import ServingEndpointDetailed

        with self.lock:
            ep = self._require(name)
            if ep.pending is not None:
                ep.reads_left -= 1
                if ep.reads_left < 0:
                    versions = {str(e["entity_version"]) for e in ep.pending["served_entities"]}
                    if versions & self.fails_load:
                        ep.failed_message = f"versions {sorted(versions & self.fails_load)} failed to load"
                    else:
                        ep.config, ep.failed_message = ep.pending, ""
                    ep.pending = None
            update = "IN_PROGRESS" if ep.pending else ("UPDATE_FAILED" if ep.failed_message else "NOT_UPDATING")
            body: dict[str, Any] = {"name": name, "state": {
                "config_update": update, "ready": "READY" if ep.config else "NOT_READY"}}
            if ep.config:
                body["config"] = _output(ep.config, ep.failed_message)
            if ep.pending:
                body["pending_config"] = _output(ep.pending, "")
            return ServingEndpointDetailed.from_dict(body)

    def create(self, name: str, config: Any):
        from databricks.sdk.errors import ResourceAlreadyExists

        with self.lock:
            self._writable(name)
            if name in self.endpoints:
                raise ResourceAlreadyExists(f"Endpoint with name '{name}' already exists")
            self._written(name)
            self.endpoints[name] = _Endpoint(pending=_input(config.as_dict()), reads_left=self.settle_reads)
            self.writes.append(self.endpoints[name].pending)

    def update_config(self, name: str, served_entities: Any = None, traffic_config: Any = None):
        from databricks.sdk.errors import ResourceConflict

        with self.lock:
            self._writable(name)
            ep = self._require(name)
            if ep.pending is not None:
                raise ResourceConflict("an update is in progress")
            self._written(name)
            ep.pending = {"served_entities": [e.as_dict() for e in served_entities],
                          "traffic_config": traffic_config.as_dict() if traffic_config else None}
            ep.reads_left, ep.failed_message = self.settle_reads, ""
            self.writes.append(ep.pending)

    def delete(self, name: str):
        with self.lock:
            self._require(name)
            self._written(name)
            del self.endpoints[name]

    def query(self, name: str, dataframe_records: list[dict[str, Any]], served: str | None = None):
        from databricks.sdk.errors import NotFound

        with self.lock:
            ep = self.endpoints.get(name)
            if ep is None or ep.config is None:
                raise NotFound(f"endpoint {name} is not serving")
            entities = {e["name"]: str(e["entity_version"]) for e in ep.config["served_entities"]}
            if served is None:
                served = max(serving.routes(ep.config).items(), key=lambda r: r[1])[0]
            elif served not in entities:
                raise NotFound(f"Served model {served} does not exist in endpoint {name}")
        fare = -1.0 if entities[served] in self.bad_answers else 12.5
        return SimpleNamespace(predictions=[fare] * len(dataframe_records), served_model_name=served)

    def do(self, method: str, path: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        """``api_client.do`` for the served-model route the smoke queries take."""
        _, name, _, served, _ = path.strip("/").split("/")
        got = self.query(name, body["dataframe_records"], served=served)
        return {"predictions": got.predictions, "served-model-name": got.served_model_name}

    def serving(self, name: str) -> list[str]:
        ep = self.endpoints.get(name)
        return [str(e["entity_version"]) for e in ep.config["served_entities"]] if ep and ep.config else []


def _input(config: dict[str, Any]) -> dict[str, Any]:
    return {"served_entities": config["served_entities"], "traffic_config": config.get("traffic_config")}


def _output(config: dict[str, Any], message: str) -> dict[str, Any]:
    entities = [{**e, "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": message}}
                for e in config["served_entities"]]
    return {"served_entities": entities, "traffic_config": config.get("traffic_config")}


class FakeRegistry:
    """The part of ``MlflowClient`` the app uses, over an in-memory model."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.aliases: dict[str, str] = {}
        self.lock = threading.Lock()

    def register(self) -> str:
        with self.lock:
            self.versions.append(str(len(self.versions) + 1))
            return self.versions[-1]

    @staticmethod
    def _missing(what: str):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        return MlflowException(f"{what} not found", error_code=RESOURCE_DOES_NOT_EXIST)

    def _mv(self, version: str):
        return SimpleNamespace(name=MODEL, version=version, status="READY", status_message="", tags={},
                               aliases=[a for a, v in self.aliases.items() if v == version])

    def get_model_version(self, name: str, version: str):
        if name != MODEL or version not in self.versions:
            raise self._missing(f"{name} version {version}")
        return self._mv(version)

    def get_model_version_by_alias(self, name: str, alias: str):
        if alias not in self.aliases:
            raise self._missing(f"alias {alias}")
        return self._mv(self.aliases[alias])

    def search_model_versions(self, filter_string: str, max_results: int | None = None,
                              order_by: list[str] | None = None):
        """Ordered by version number (``version_number DESC`` is the one order the app asks)."""
        ordered = sorted(self.versions, key=int, reverse=order_by == ["version_number DESC"])
        return [self._mv(v) for v in ordered[:max_results]]

    def get_registered_model(self, name: str):
        return SimpleNamespace(aliases=dict(self.aliases))

    def set_registered_model_alias(self, name: str, alias: str, version: str):
        with self.lock:
            self.aliases[alias] = version

    def delete_registered_model_alias(self, name: str, alias: str):
        with self.lock:
            if self.aliases.pop(alias, None) is None:
                raise self._missing(f"alias {alias}")


POLICY = {"version": 1, "models": [{"name": MODEL, "environments": {"prod": {
    "endpoint": ENDPOINT, "track": "latest", "aliases": ["Champion"], "wait_timeout_seconds": 600,
    "smoke": [{"name": "one trip", "records": [{"trip_distance": 2.0}], "expect": {"min": 0}}],
}}}]}


def without_rollback_window(env: dict[str, Any]) -> dict[str, Any]:
    """``env`` with its strategy's ``rollback_window`` 0s unless the test sets one: most tests follow
    one rollout to an endpoint that serves its version alone; tests/test_undo_hold.py sets the
    window (the policy's default keeps the previous champion at 0% for hours)."""
    strategy = env.get("strategy") or {}
    return {**env, "strategy": {**strategy, "rollback_window": strategy.get("rollback_window", "0s")}}


class Driver:
    """Plays the Functions host for the commands and rollout queues."""

    def __init__(self, tmp: Path, faults: Faults | None = None, env: dict[str, Any] | None = None) -> None:
        """``env``: policy settings of the environment over the default ones (POLICY)."""
        self.clock = Clock()
        self.faults = faults or Faults()
        tmp.mkdir(parents=True, exist_ok=True)
        policy = tmp / "policy.json"
        model = POLICY["models"][0]
        policy.write_text(json.dumps({**POLICY, "models": [{**model, "environments": {
            "prod": without_rollback_window({**model["environments"]["prod"], **(env or {})})}}]}))
        settings = Settings.from_env({
            "REACTOR_STORAGE": f"sqlite:///{tmp / 'state.db'}", "REACTOR_POLICY_FILE": str(policy),
            "MLFLOW_WEBHOOK_SECRET": SECRET, "ROLLOUT_BACKOFF_BASE_SECONDS": "2", "ROLLOUT_BACKOFF_CAP_SECONDS": "30",
        })
        self.raw_tables = SqliteTableService(str(tmp / "state.db"))
        self.raw_queues = SqliteQueueService(str(tmp / "state.db"), clock=self.clock)
        self.serving_api = FakeServing(self)
        self.registry = FakeRegistry()
        workspace = SimpleNamespace(serving_endpoints=self.serving_api, api_client=self.serving_api)
        self.deps = Deps(settings, FaultyTables(self.raw_tables, self.faults),
                         FaultyQueues(self.raw_queues, self.faults), lambda: workspace, lambda: self.registry,
                         clock=self.clock)
        self.current: str | None = None
        self.poisoned: list[str] = []
        self.crashes = 0
        self.steps_taken = 0  # rollout-step messages received so far
        self.crash_at: set[int] = set()  # the host dies holding these rollout-step messages (by ``steps_taken``)

    # --- what the outside world does -------------------------------------------------------
    def webhook(self, version: str, delivery: str | None = None, at: str | None = None) -> Response:
        body = json.dumps({"entity": "model_version", "action": "created", "timestamp": at or f"t{version}",
                           "data": {"name": MODEL, "version": version}}).encode()
        delivery = delivery or str(uuid.uuid4())
        stamp = str(int(self.clock.now))
        headers = {"x-mlflow-delivery-id": delivery, "x-mlflow-timestamp": stamp,
                   "x-mlflow-signature": mlflow_signature(SECRET, delivery, stamp, body)}
        try:
            return webhook.handle(self.deps, Request("POST", body, headers))
        except StorageFault:
            return Response(503, {"error": "temporarily unavailable"})

    def command(self, payload: dict[str, Any]) -> None:
        from shared.queues import enqueue

        enqueue(self.raw_queues, COMMANDS_QUEUE, payload)

    # --- the host ----------------------------------------------------------------------------
    def _take(self) -> tuple[str, ReceivedMessage] | None:
        for queue in QUEUES:
            got = self.raw_queues.receive(queue, max_messages=1, visibility_timeout=RECEIVE_TIMEOUT)
            if got:
                return queue, got[0]
        return None

    def step(self, crash: bool = False) -> bool:
        """Run one visible message; False when none is visible now."""
        taken = self._take()
        if taken is None:
            return False
        queue, msg = taken
        self.steps_taken += queue == ROLLOUT_QUEUE
        if crash or (queue == ROLLOUT_QUEUE and self.steps_taken in self.crash_at):
            self.crashes += 1  # the host died holding it: invisible until the receive timeout
            return True
        body = decode_content(msg.content)
        if msg.dequeue_count > MAX_DEQUEUE:
            self._poison(queue, msg)
            return True
        try:
            if queue == ROLLOUT_QUEUE:
                self.current = json.loads(body)["rollout"]
                rollout.handle_message(self.deps, body, msg.id)
            elif queue == COMMANDS_QUEUE:
                commands.handle_message(self.deps, body, msg.id)
            else:
                operators.record_poison(self.deps, queue, body, msg.id)
        except StorageFault:
            if msg.dequeue_count >= MAX_DEQUEUE:
                self._poison(queue, msg)
            else:
                self.raw_queues.update_visibility(queue, msg.id, msg.pop_receipt, 0)
            return True
        finally:
            self.current = None
        self.raw_queues.delete(queue, msg.id, msg.pop_receipt)
        return True

    def _poison(self, queue: str, msg: ReceivedMessage) -> None:
        if not queue.endswith(POISON_SUFFIX):
            self.raw_queues.send(queue + POISON_SUFFIX, msg.content)
            self.poisoned.append(msg.id)
        self.raw_queues.delete(queue, msg.id, msg.pop_receipt)

    def next_visible(self) -> float | None:
        times = [m.next_visible_time.timestamp() for q in QUEUES for m in self.raw_queues.all_messages(q)]
        return min(times) if times else None

    def sweep(self) -> dict[str, int]:
        try:
            return repair.tick(self.deps)
        except StorageFault:
            return {"fault": 1}

    def run(self, *, limit: int = 5000, horizon: float = 3600.0, sweep_every: float = 30.0) -> float:
        """Run until nothing is left to do, moving the clock to the next visible message and
        sweeping every ``sweep_every`` seconds as the timer would. Returns the clock time at
        which the last record became terminal (or the end, if one never did)."""
        start = self.clock.now
        next_sweep = start + sweep_every
        for _ in range(limit):
            if self.step():
                continue
            if self.settled():
                return self.clock.now
            nxt = self.next_visible()
            target = min(nxt, next_sweep) if nxt is not None else next_sweep
            # Queue times are kept to the microsecond: step just past the moment.
            self.clock.now = max(self.clock.now, target + 0.001)
            if self.clock.now >= next_sweep:
                self.sweep()
                next_sweep = self.clock.now + sweep_every
            if self.clock.now - start > horizon:
                break
        return self.clock.now

    # --- what must hold ----------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        return journal.list_records(self.raw_tables)

    def rollouts(self) -> list[dict[str, Any]]:
        return rollouts.for_endpoint(self.raw_tables, ENDPOINT)

    def settled(self) -> bool:
        open_records = [r for r in self.records() if r["status"] not in journal.TERMINAL]
        open_rollouts = [r for r in self.rollouts() if r["status"] not in rollouts.TERMINAL]
        return not open_records and not open_rollouts

    def check_quiet(self) -> None:
        """Once nothing is left to do: every record and rollout terminal, the lease free, no
        version that failed its gates serving, and no version rolled out twice in a row."""
        self.check_lease()
        open_records = [(r["key"], r["status"]) for r in self.records() if r["status"] not in journal.TERMINAL]
        assert not open_records, open_records
        rows = self.rollouts()
        assert all(r["status"] in rollouts.TERMINAL for r in rows), rows
        lease = rollouts.lease(self.raw_tables, ENDPOINT)
        assert not lease.get("active") and not lease.get("queued"), lease
        broken = self.serving_api.bad_answers | self.serving_api.fails_load
        assert not set(self.serving_api.serving(ENDPOINT)) & broken
        # A version is rolled out again only after another rollout changed the endpoint, or when
        # an operator deployed it again.
        last_done, touched = None, False
        for row in sorted((r for r in rows if r.get("finished_at")), key=lambda r: r["finished_at"]):
            if row["status"] == "done":
                if last_done and last_done["version"] == row["version"] and not touched:
                    origin = journal.get(self.raw_tables, "command", row["origin"]["id"]) or {}
                    assert origin.get("command", {}).get("command") in ("deploy", "hold", "release"), \
                        f"version {row['version']} rolled out twice in a row: {last_done['id']}, {row['id']}"
                last_done, touched = row, False
            elif any(h["step"] == "deploy" for h in row.get("history", [])):
                touched = True

    def check_lease(self) -> None:
        """L1: the lease names only live rollouts; L2: only its active rollout wrote the endpoint."""
        assert not self.serving_api.violations, self.serving_api.violations
        ls = rollouts.lease(self.raw_tables, ENDPOINT)
        for slot in ("active", "queued"):
            rid = ls.get(slot)
            if rid:
                row = rollouts.get(self.raw_tables, ENDPOINT, rid)
                assert row is not None and row.data["status"] not in rollouts.TERMINAL, (slot, rid, row and row.data)
