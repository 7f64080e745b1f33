"""The CLI's storage backend: the app's own tables and queues, opened from a ``REACTOR_STORAGE``
value (``sqlite:///path``, ``azure`` or ``azure:<connection>``, resolved from the environment as
the app resolves it, identity-based connections included: shared.storage, shared.connections),
and the policy file for the status summary. It reads and sends exactly as the app's HTTP routes
do (handlers/operators.py, handlers/submit.py), through the same functions."""

from __future__ import annotations

import sqlite3
from functools import cached_property
from pathlib import Path
from typing import Any

from reactor.backend import Backend, BackendError, NotFound, Page, Refused
from shared import commands, journal, overview, rejections, rollouts
from shared.commands import CommandRejected
from shared.delivery import store as analyses
from shared.monitoring import store as monitor_store
from shared.policy import Policy, PolicyError, load_policy
from shared.queues import QueueService
from shared.settings import SettingError
from shared.storage import open_queues, open_tables, parse
from shared.tables import TableService


class StorageBackend(Backend):
    def __init__(self, url: str, policy_file: Path) -> None:
        self.url, self.policy_file = url, policy_file
        try:
            spec = parse(url)
            # A mistyped path would otherwise be a new, empty state that says nothing is deployed.
            if spec.kind == "sqlite" and not Path(spec.target).is_file():
                raise BackendError(f"storage {url}: no such database file")
            self._tables: TableService = open_tables(url)
            self._queues: QueueService = open_queues(url)
        except SettingError as exc:
            raise BackendError(str(exc)) from exc

    @property
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        from azure.core.exceptions import AzureError

        return sqlite3.Error, OSError, AzureError

    @cached_property
    def policy(self) -> Policy:
        try:
            return load_policy(self.policy_file)
        except PolicyError as exc:
            raise BackendError(f"the status needs the app's policy file (--policy): {exc}") from exc

    def status(self) -> list[dict[str, Any]]:
        return overview.status(self._tables, self.policy)

    def rollouts(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        rows, _, token = rollouts.page(self._tables, endpoint, limit=limit, continuation=continuation)
        return rows, token

    def rollout(self, endpoint: str, rid: str) -> dict[str, Any]:
        entity = rollouts.get(self._tables, endpoint, rid)
        if entity is None:
            raise NotFound(f"no rollout {rid} on endpoint {endpoint}")
        return {"rollout": entity.data, "analyses": analyses.for_rollout(self._tables, endpoint, rid)}

    def records(self, kind: str | None, status: str | None, *, limit: int, continuation: str | None) -> Page:
        return journal.page(self._tables, kind, status, limit=limit, continuation=continuation)

    def record(self, kind: str, key: str) -> dict[str, Any]:
        found = journal.get(self._tables, kind, key)
        if found is None:
            raise NotFound(f"no {kind} record {key}")
        return found

    def rejections(self) -> dict[str, Any]:
        return rejections.summary(self._tables)

    def decisions(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        got = monitor_store.decisions_page(self._tables, endpoint, limit=limit, continuation=continuation)
        return [e.data for e in got.entities], got.continuation

    def send(self, body: bytes) -> str:
        try:
            return commands.send(self._queues, body)
        except CommandRejected as exc:
            raise Refused(f"invalid command: {exc}") from exc
