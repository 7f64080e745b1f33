"""SQLite table backend: the embedded default. Semantics as in shared.tables (Azure Tables).

Entities are stored as the properties Azure would store (shared.azure_limits), so every key,
property and size limit of Azure Tables holds here too.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

from shared.azure_limits import check_table_name, encode_entity, from_properties
from shared.sqlite_db import SqliteDb
from shared.tables import (
    MAX_PAGE,
    ConcurrencyConflict,
    Entity,
    EntityExists,
    Op,
    Page,
    RowRange,
    TableService,
    check_range,
    check_transaction,
    continuation_keys,
    continuation_token,
)

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


def _encode(table: str, pk: str, rk: str, data: dict[str, Any]) -> str:
    check_table_name(table)
    return json.dumps(encode_entity(pk, rk, data))


def _decode(text: str) -> dict[str, Any]:
    return from_properties(json.loads(text))


class SqliteTableService(TableService):
    def __init__(self, path: str) -> None:
        self.db = SqliteDb.open(path, _SCHEMA)

    def insert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        with self.db.transaction(savepoint=False) as conn:
            return self._insert(conn, table, partition_key, row_key, data)

    def get(self, table: str, partition_key: str, row_key: str) -> Entity | None:
        with self.db.transaction(savepoint=False) as conn:
            row = conn.execute(
                "SELECT data, etag FROM table_entities WHERE tbl = ? AND pk = ? AND rk = ?",
                (table, partition_key, row_key),
            ).fetchone()
        return None if row is None else Entity(partition_key, row_key, _decode(row[0]), row[1])

    def upsert(self, table: str, partition_key: str, row_key: str, data: dict[str, Any]) -> Entity:
        with self.db.transaction(savepoint=False) as conn:
            return self._upsert(conn, table, partition_key, row_key, data)

    def update(self, table: str, entity: Entity) -> Entity:
        with self.db.transaction(savepoint=False) as conn:
            return self._update(conn, table, entity.partition_key, entity.row_key, entity.data, entity.etag)

    def delete(self, table: str, entity: Entity) -> None:
        with self.db.transaction(savepoint=False) as conn:
            self._delete(conn, table, entity.partition_key, entity.row_key, entity.etag)

    def transact(self, table: str, partition_key: str, ops: list[Op]) -> dict[str, Entity]:
        check_transaction(ops)
        out: dict[str, Entity] = {}
        # One SQLite transaction: an exception from any op rolls every op back.
        with self.db.transaction() as conn:
            for op in ops:
                if op.kind == "insert":
                    out[op.row_key] = self._insert(conn, table, partition_key, op.row_key, op.data)
                elif op.kind == "upsert":
                    out[op.row_key] = self._upsert(conn, table, partition_key, op.row_key, op.data)
                elif op.kind == "update":
                    out[op.row_key] = self._update(conn, table, partition_key, op.row_key, op.data, op.etag)
                else:
                    self._delete(conn, table, partition_key, op.row_key, op.etag)
        return out

    def query_page(self, table: str, partition_key: str | None = None, *, limit: int = MAX_PAGE,
                   continuation: str | None = None, rows: RowRange | None = None) -> Page:
        check_range(partition_key, rows)
        limit = max(1, min(limit, MAX_PAGE))
        sql = "SELECT pk, rk, data, etag FROM table_entities WHERE tbl = ?"
        args: list[Any] = [table]
        if partition_key is not None:
            sql += " AND pk = ?"
            args.append(partition_key)
        if rows is not None:
            sql += " AND rk >= ? AND rk < ?"
            args += [rows.start, rows.stop]
        if continuation:
            pk, rk = continuation_keys(continuation)
            sql += " AND (pk > ? OR (pk = ? AND rk > ?))"
            args += [pk, pk, rk]
        with self.db.transaction(savepoint=False) as conn:
            found = conn.execute(sql + " ORDER BY pk, rk LIMIT ?", [*args, limit + 1]).fetchall()
        more = len(found) > limit
        found = found[:limit]
        entities = [Entity(pk, rk, _decode(data), etag) for pk, rk, data, etag in found]
        token = continuation_token(found[-1][0], found[-1][1]) if more else None
        return Page(entities, token)

    @staticmethod
    def _insert(conn: sqlite3.Connection, table: str, pk: str, rk: str, data: dict[str, Any]) -> Entity:
        etag = uuid.uuid4().hex
        cur = conn.execute(
            "INSERT OR IGNORE INTO table_entities (tbl, pk, rk, data, etag) VALUES (?, ?, ?, ?, ?)",
            (table, pk, rk, _encode(table, pk, rk, data), etag),
        )
        if cur.rowcount != 1:
            raise EntityExists(f"{table}/{pk}/{rk}")
        return Entity(pk, rk, dict(data), etag)

    @staticmethod
    def _upsert(conn: sqlite3.Connection, table: str, pk: str, rk: str, data: dict[str, Any]) -> Entity:
        etag = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO table_entities (tbl, pk, rk, data, etag) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (tbl, pk, rk) DO UPDATE SET data = excluded.data, etag = excluded.etag",
            (table, pk, rk, _encode(table, pk, rk, data), etag),
        )
        return Entity(pk, rk, dict(data), etag)

    @staticmethod
    def _update(conn: sqlite3.Connection, table: str, pk: str, rk: str, data: dict[str, Any], etag: str) -> Entity:
        new = uuid.uuid4().hex
        sql = "UPDATE table_entities SET data = ?, etag = ? WHERE tbl = ? AND pk = ? AND rk = ?"
        args: list[Any] = [_encode(table, pk, rk, data), new, table, pk, rk]
        if etag != "*":
            sql += " AND etag = ?"
            args.append(etag)
        if conn.execute(sql, args).rowcount != 1:
            raise ConcurrencyConflict(f"{table}/{pk}/{rk}")
        return Entity(pk, rk, dict(data), new)

    @staticmethod
    def _delete(conn: sqlite3.Connection, table: str, pk: str, rk: str, etag: str) -> None:
        sql = "DELETE FROM table_entities WHERE tbl = ? AND pk = ? AND rk = ?"
        args: list[Any] = [table, pk, rk]
        if etag != "*":
            sql += " AND etag = ?"
            args.append(etag)
        if conn.execute(sql, args).rowcount != 1:
            raise ConcurrencyConflict(f"{table}/{pk}/{rk}")
