"""Opens the queue and table backends named by the ``REACTOR_STORAGE`` setting.

- ``azure`` or ``azure:<connection>``: Azure Storage queues and tables of the account that the
  connection names (default ``AzureWebJobsStorage``, the one the queue triggers listen on),
  resolved as the Functions host resolves it (shared.connections);
- ``sqlite:///<path>``: the embedded default, one file for queues and tables
  (``sqlite:////abs/path`` is absolute, ``sqlite:///rel/path`` relative).

Clients are built once per process and setting values, and connect on first use.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shared.connections import DEFAULT_CONNECTION, StorageConnection, resolve
from shared.queues import QueueService
from shared.settings import SettingError
from shared.tables import TableService


@dataclass(frozen=True)
class StorageSpec:
    kind: str  # "sqlite" or "azure"
    target: str  # the SQLite path, or the connection name


def parse(url: str) -> StorageSpec:
    """``REACTOR_STORAGE``'s value; SettingError when it is neither form."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return StorageSpec("sqlite", url[len("sqlite:///"):])
    if url == "azure" or url.startswith("azure:"):
        return StorageSpec("azure", url.partition(":")[2] or DEFAULT_CONNECTION)
    raise SettingError("REACTOR_STORAGE", f"{url!r}: expected azure, azure:<connection> or sqlite:///<path>")


def connection_of(url: str, env: Mapping[str, str] | None = None) -> StorageConnection | None:
    """The storage account behind ``url`` (None for SQLite); raises ConnectionSettingError."""
    spec = parse(url)
    return resolve(spec.target, os.environ if env is None else env) if spec.kind == "azure" else None


def open_queues(url: str, env: Mapping[str, str] | None = None) -> QueueService:
    account = connection_of(url, env)
    return _azure_queues(account) if account else _sqlite_queues(parse(url).target)


def open_tables(url: str, env: Mapping[str, str] | None = None) -> TableService:
    account = connection_of(url, env)
    return _azure_tables(account) if account else _sqlite_tables(parse(url).target)


def one_commit(*services: Any) -> AbstractContextManager[Any]:
    """The writes made inside, to all of ``services``, in one transaction where the backend
    has one: the SQLite backends of one file share it (shared.sqlite_db), so a webhook's record
    and its message commit together or not at all. Azure Storage has no transaction across
    tables and queues: there each write is its own round trip, and a crash between them is
    what the repair sweep is for (handlers/repair.py)."""
    dbs = {id(db): db for db in (getattr(s, "db", None) for s in services)}
    if len(dbs) == 1 and (db := next(iter(dbs.values()))) is not None:
        return db.transaction()
    return contextlib.nullcontext()


@lru_cache(maxsize=8)
def _sqlite_queues(path: str) -> QueueService:
    from shared.queues.sqlite import SqliteQueueService

    return SqliteQueueService(path)


@lru_cache(maxsize=8)
def _sqlite_tables(path: str) -> TableService:
    from shared.tables.sqlite import SqliteTableService

    return SqliteTableService(path)


@lru_cache(maxsize=8)
def _azure_queues(account: StorageConnection) -> QueueService:
    from shared.queues.azure import AzureQueueService

    return AzureQueueService(account.queue_service())


@lru_cache(maxsize=8)
def _azure_tables(account: StorageConnection) -> TableService:
    from shared.tables.azure import AzureTableService

    return AzureTableService(account.table_service())
