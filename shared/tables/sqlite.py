"""SQLite table backend: the embedded default. Semantics as in shared.tables (Azure Tables)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from shared.sqlite_db import SqliteDb
from shared.tables import ConcurrencyConflict, Entity, EntityExists, TableService

_SCHEMA = """
CREATE TABLE IF NOT EXISTS table_entities (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    rk TEXT NOT NULL,
    data TEXT NOT NULL,
    etag TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, rk)
);
"""


class SqliteTableService(TableService):
    def __init__(self, path: str) -> None:
        self._db = SqliteDb(path, _SCHEMA)

    def insert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        etag = uuid.uuid4().hex
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO table_entities (tbl, pk, rk, data, etag) VALUES (?, ?, ?, ?, ?)",
                (table, partition_key, row_key, json.dumps(data), etag),
            )
            if cur.rowcount != 1:
                raise EntityExists(f"{table}/{partition_key}/{row_key}")
        return Entity(partition_key, row_key, dict(data), etag)

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT data, etag FROM table_entities WHERE tbl = ? AND pk = ? AND rk = ?",
                (table, partition_key, row_key),
            ).fetchone()
        return None if row is None else Entity(partition_key, row_key, json.loads(row[0]), row[1])

    def upsert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        etag = uuid.uuid4().hex
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO table_entities (tbl, pk, rk, data, etag) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tbl, pk, rk) DO UPDATE SET data = excluded.data, etag = excluded.etag",
                (table, partition_key, row_key, json.dumps(data), etag),
            )
        return Entity(partition_key, row_key, dict(data), etag)

    def update(self, table: str, entity: Entity) -> Entity:
        etag = uuid.uuid4().hex
        with self._db.transaction() as conn:
            cur = conn.execute(
                "UPDATE table_entities SET data = ?, etag = ? WHERE tbl = ? AND pk = ? AND rk = ? AND etag = ?",
                (json.dumps(entity.data), etag, table, entity.partition_key, entity.row_key, entity.etag),
            )
            if cur.rowcount != 1:
                raise ConcurrencyConflict(f"{table}/{entity.partition_key}/{entity.row_key}")
        return Entity(entity.partition_key, entity.row_key, dict(entity.data), etag)

    def query(self, table: str, partition_key: str | None = None, **equals: Any) -> list[Entity]:
        sql = "SELECT pk, rk, data, etag FROM table_entities WHERE tbl = ?"
        args: list[Any] = [table]
        if partition_key is not None:
            sql += " AND pk = ?"
            args.append(partition_key)
        with self._db.transaction() as conn:
            rows = conn.execute(sql + " ORDER BY pk, rk", args).fetchall()
        out = [Entity(pk, rk, json.loads(data), etag) for pk, rk, data, etag in rows]
        return [e for e in out if all(e.data.get(k) == v for k, v in equals.items())]
