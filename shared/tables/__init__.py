"""State tables: one interface, a backend per storage kind.

The interface follows Azure Table Storage (the production backend): entities addressed by
partition key and row key, a new ETag on every write, conditional update and delete that
fail when the ETag no longer matches (HTTP 412), insert that fails when the entity exists
(HTTP 409). That optimistic concurrency is what the endpoint lease and the rollout state
machine rely on. An entity-group transaction (``transact``) applies several writes to one
partition of one table all or nothing, as Azure's batch does (at most 100 operations, each
entity once). Listing pages by continuation token, as Azure returns ``x-ms-continuation``,
optionally over a range of row keys in one partition: Azure serves a filter on
``PartitionKey eq`` and ``RowKey ge/lt`` as a range scan of the index, reading only the range
("Design for querying", Azure Table storage design guide,
https://learn.microsoft.com/azure/storage/tables/table-storage-design-for-query), so a range is
how a query stays bounded by what it asks for rather than by the partition's history.
"""

from __future__ import annotations

import base64
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_TRANSACTION_OPS = 100
MAX_PAGE = 1000  # Azure returns at most 1,000 entities per query response


class EntityExists(Exception):
    """Insert of an entity that already exists (Azure: 409 EntityAlreadyExists)."""


class ConcurrencyConflict(Exception):
    """The entity changed since it was read (Azure: 412 UpdateConditionNotSatisfied), or is gone."""


@dataclass
class Entity:
    partition_key: str
    row_key: str
    data: dict[str, Any] = field(default_factory=dict)
    etag: str = ""


@dataclass(frozen=True)
class Op:
    """One write of an entity-group transaction.

    ``insert`` fails if the entity exists; ``update`` and ``delete`` need ``etag`` to match
    (``"*"`` matches any); ``upsert`` creates or replaces.
    """

    kind: Literal["insert", "update", "upsert", "delete"]
    row_key: str
    data: dict[str, Any] = field(default_factory=dict)
    etag: str = "*"

    @classmethod
    def insert(cls, row_key: str, data: dict[str, Any]) -> Op:
        return cls("insert", row_key, data)

    @classmethod
    def update(cls, entity: Entity, data: dict[str, Any] | None = None) -> Op:
        return cls("update", entity.row_key, entity.data if data is None else data, entity.etag)

    @classmethod
    def delete(cls, entity: Entity) -> Op:
        return cls("delete", entity.row_key, etag=entity.etag)


@dataclass(frozen=True)
class Page:
    entities: list[Entity]
    continuation: str | None  # None: this was the last page


@dataclass(frozen=True)
class RowRange:
    """Row keys ``start <= key < stop`` of one partition."""

    start: str
    stop: str

    @classmethod
    def prefix(cls, prefix: str) -> RowRange:
        """Every row key that starts with ``prefix`` (not empty)."""
        return cls(prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))


def check_range(partition_key: str | None, rows: RowRange | None) -> None:
    if rows is not None and partition_key is None:
        raise ValueError("a row key range is of one partition: name it")


class TableService(ABC):
    @abstractmethod
    def insert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        """Create; raises EntityExists if it is there already."""

    @abstractmethod
    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None: ...

    @abstractmethod
    def upsert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        """Create or replace, whatever its ETag."""

    @abstractmethod
    def update(self, table: str, entity: Entity) -> Entity:
        """Replace ``entity.data`` if its stored ETag still equals ``entity.etag``; else ConcurrencyConflict."""

    @abstractmethod
    def delete(self, table: str, entity: Entity) -> None:
        """Delete if the stored ETag equals ``entity.etag`` (``"*"``: any); ConcurrencyConflict otherwise."""

    @abstractmethod
    def transact(self, table: str, partition_key: str, ops: list[Op]) -> dict[str, Entity]:
        """Apply ``ops`` to one partition atomically; returns the written entities by row key.
        Raises EntityExists or ConcurrencyConflict (and writes nothing) if any op fails."""

    @abstractmethod
    def query_page(self, table: str, partition_key: str | None = None, *, limit: int = MAX_PAGE,
                   continuation: str | None = None, rows: RowRange | None = None) -> Page:
        """Up to ``limit`` entities in key order (partition, then row), from ``continuation`` on;
        with ``rows``, only those of ``partition_key`` whose row key is in that range."""

    def query(self, table: str, partition_key: str | None = None, *, rows: RowRange | None = None,
              where: Callable[[dict[str, Any]], bool] | None = None, **equals: Any) -> list[Entity]:
        """Every entity of a partition (or of the table, or of a row range) whose fields equal
        ``equals``, by keys. Reads page after page: use it where the set is bounded by design."""
        out: list[Entity] = []
        token: str | None = None
        while True:
            page = self.query_page(table, partition_key, continuation=token, rows=rows)
            out.extend(e for e in page.entities
                       if all(e.data.get(k) == v for k, v in equals.items()) and (where is None or where(e.data)))
            token = page.continuation
            if token is None:
                return out


def delete_indexed(tables: TableService, table: str, entry: Entity, also: tuple[str, ...] = ()) -> bool:
    """Delete the row an index entry names (``entry.data["key"]``, in the entry's partition)
    together with the entry and the row's other index entries ``also`` (row keys), in one
    transaction; True when the row went. An entry of ``also`` not written (yet) is left out. A
    row already gone (deleted by hand, or by another sweep) fails the transaction, and the
    entries go alone."""
    pk = entry.partition_key
    ops = [Op("delete", entry.data["key"]), Op.delete(entry)]
    others = [Op("delete", key) for key in also]
    if others:
        with contextlib.suppress(ConcurrencyConflict):
            tables.transact(table, pk, ops + others)
            return True
        others = [op for op in others if tables.get(table, pk, op.row_key) is not None]
    try:
        tables.transact(table, pk, ops + others)
        return True
    except ConcurrencyConflict:
        for op in [Op.delete(entry), *others]:
            with contextlib.suppress(ConcurrencyConflict):
                tables.delete(table, Entity(pk, op.row_key, etag=op.etag))
        return False


def continuation_token(partition_key: str, row_key: str) -> str:
    """An opaque continuation token naming where the next page starts (or after what it starts)."""
    return base64.urlsafe_b64encode(json.dumps([partition_key, row_key]).encode()).decode("ascii")


def continuation_keys(token: str) -> tuple[str, str]:
    """The keys in a token of :func:`continuation_token`; ValueError for any other text."""
    try:
        pk, rk = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        return str(pk), str(rk)
    except (ValueError, TypeError) as exc:
        raise ValueError("continuation token is not one this service issued") from exc


def check_transaction(ops: list[Op]) -> None:
    """Azure's batch rules: 1..100 operations, each row at most once."""
    if not 0 < len(ops) <= MAX_TRANSACTION_OPS:
        raise ValueError(f"a transaction has 1..{MAX_TRANSACTION_OPS} operations, not {len(ops)}")
    keys = [op.row_key for op in ops]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a transaction names an entity more than once: {keys}")
