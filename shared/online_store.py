"""Online feature tables in a relational database: SQLite, PostgreSQL (what Lakebase is) or
MySQL/MariaDB (a third-party online store), through each one's PEP 249 driver.

One small surface for every store: create the table keyed by its primary key, upsert and
delete rows by key, look rows up by key, and keep a sync watermark (the last source Delta
version copied and when) in a ``_feature_sync_state`` table beside the features, so that
freshness can be checked in the store itself. Drivers are imported when a store is opened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

SYNC_STATE = "_feature_sync_state"
_BATCH = 5000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Generic column types (what Delta/Arrow types reduce to) → each dialect's type.
_TYPES = {
    "sqlite": {"bigint": "INTEGER", "double": "REAL", "string": "TEXT", "key": "TEXT", "boolean": "INTEGER",
               "timestamp": "TEXT"},
    "postgresql": {"bigint": "BIGINT", "double": "DOUBLE PRECISION", "string": "TEXT", "key": "TEXT",
                   "boolean": "BOOLEAN", "timestamp": "TIMESTAMPTZ"},
    "mysql": {"bigint": "BIGINT", "double": "DOUBLE", "string": "TEXT", "key": "VARCHAR(255)", "boolean": "BOOLEAN",
              "timestamp": "DATETIME(6)"},
}


class OnlineStoreError(RuntimeError):
    """The store cannot be reached or refused a statement."""


def physical_name(online_table: str) -> str:
    """``catalog.schema.table`` → a plain identifier every dialect accepts."""
    name = online_table.replace(".", "__").replace("-", "_")
    if not _IDENT.match(name):
        raise ValueError(f"online table name {online_table!r} does not map to a valid identifier")
    return name


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # bigint | double | string | boolean | timestamp


class OnlineStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._state_ready = False
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        try:
            if scheme == "sqlite":
                import sqlite3

                self.dialect, self.param = "sqlite", "?"
                path = url[len("sqlite:///"):]
                self._conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
            elif scheme in ("postgresql", "postgres"):
                import psycopg

                self.dialect, self.param = "postgresql", "%s"
                self._conn = psycopg.connect(url.replace(parts.scheme + "://", "postgresql://", 1), autocommit=True,
                                             connect_timeout=10)
            elif scheme in ("mysql", "mariadb"):
                import pymysql

                self.dialect, self.param = "mysql", "%s"
                self._conn = pymysql.connect(
                    host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=unquote(parts.username or "root"),
                    password=unquote(parts.password or ""), database=parts.path.lstrip("/") or None,
                    autocommit=True, connect_timeout=10, charset="utf8mb4",
                )
            else:
                raise ValueError(f"unsupported online store URL scheme {parts.scheme!r}: "
                                 "use sqlite, postgresql or mysql")
        except ValueError:
            raise
        except Exception as exc:
            raise OnlineStoreError(f"cannot connect to the online store at {redact(url)}: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, ident: str) -> str:
        if not _IDENT.match(ident):
            raise ValueError(f"invalid identifier {ident!r}")
        return f"`{ident}`" if self.dialect == "mysql" else f'"{ident}"'

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            with closing(self._conn.cursor()) as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        except Exception as exc:
            raise OnlineStoreError(f"{self.dialect}: {exc}") from exc

    def _run_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            with closing(self._conn.cursor()) as cur:
                if self.dialect == "sqlite":
                    self._conn.execute("BEGIN")
                    try:
                        cur.executemany(sql, rows)
                    except BaseException:
                        self._conn.execute("ROLLBACK")
                        raise
                    self._conn.execute("COMMIT")
                else:
                    cur.executemany(sql, rows)
        except Exception as exc:
            raise OnlineStoreError(f"{self.dialect}: {exc}") from exc

    def ensure_table(self, table: str, columns: Sequence[Column], primary_keys: Sequence[str]) -> None:
        if not primary_keys:
            raise ValueError(f"online table {table} needs a primary key")
        types = _TYPES[self.dialect]
        cols = ", ".join(
            f"{self._q(c.name)} {types['key'] if c.name in primary_keys and c.type == 'string' else types[c.type]}"
            for c in columns
        )
        pk = ", ".join(self._q(k) for k in primary_keys)
        self._run(f"CREATE TABLE IF NOT EXISTS {self._q(table)} ({cols}, PRIMARY KEY ({pk}))")

    def replace(self, table: str, staging: str) -> None:
        """Make ``table`` hold exactly the rows of ``staging``, in one transaction (readers see the
        old rows or the new ones, never a half-loaded table), then drop ``staging``."""
        statements = [f"DELETE FROM {self._q(table)}", f"INSERT INTO {self._q(table)} SELECT * FROM {self._q(staging)}"]
        try:
            if self.dialect == "postgresql":
                with self._conn.transaction(), closing(self._conn.cursor()) as cur:
                    for sql in statements:
                        cur.execute(sql)
            else:
                begin, commit, rollback = (("BEGIN", "COMMIT", "ROLLBACK") if self.dialect == "sqlite" else
                                           ("START TRANSACTION", "COMMIT", "ROLLBACK"))
                with closing(self._conn.cursor()) as cur:
                    cur.execute(begin)
                    try:
                        for sql in statements:
                            cur.execute(sql)
                    except BaseException:
                        cur.execute(rollback)
                        raise
                    cur.execute(commit)
        except Exception as exc:
            raise OnlineStoreError(f"{self.dialect}: {exc}") from exc
        self.drop_table(staging)

    def drop_table(self, table: str) -> None:
        self._run(f"DROP TABLE IF EXISTS {self._q(table)}")

    def upsert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]],
               primary_keys: Sequence[str]) -> int:
        cols = ", ".join(self._q(c) for c in columns)
        marks = ", ".join([self.param] * len(columns))
        others = [c for c in columns if c not in primary_keys]
        if self.dialect == "mysql":
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{self._q(c)} = VALUES({self._q(c)})" for c in others or
                                                           primary_keys[:1])
        else:
            conflict = ", ".join(self._q(k) for k in primary_keys)
            action = ("DO UPDATE SET " + ", ".join(f"{self._q(c)} = excluded.{self._q(c)}" for c in others)
                      if others else "DO NOTHING")
            tail = f" ON CONFLICT ({conflict}) {action}"
        sql = f"INSERT INTO {self._q(table)} ({cols}) VALUES ({marks}){tail}"
        return self._batched(sql, rows)

    def delete(self, table: str, primary_keys: Sequence[str], keys: Iterable[Sequence[Any]]) -> int:
        where = " AND ".join(f"{self._q(k)} = {self.param}" for k in primary_keys)
        return self._batched(f"DELETE FROM {self._q(table)} WHERE {where}", keys)

    def _batched(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        n, batch = 0, []
        for row in rows:
            batch.append(tuple(row))
            if len(batch) >= _BATCH:
                self._run_many(sql, batch)
                n, batch = n + len(batch), []
        self._run_many(sql, batch)
        return n + len(batch)

    def lookup(self, table: str, primary_keys: Sequence[str], keys: Sequence[Sequence[Any]]) -> list[dict | None]:
        """Rows for ``keys`` in order; ``None`` where the store has no row for a key."""
        if not keys:
            return []
        found: dict[tuple, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = [tuple(k) for k in keys[start:start + 500]]
            if len(primary_keys) == 1:
                where = f"{self._q(primary_keys[0])} IN ({', '.join([self.param] * len(chunk))})"
                args: list[Any] = [k[0] for k in chunk]
            else:
                one = "(" + " AND ".join(f"{self._q(k)} = {self.param}" for k in primary_keys) + ")"
                where = " OR ".join([one] * len(chunk))
                args = [v for k in chunk for v in k]
            try:
                with closing(self._conn.cursor()) as cur:
                    cur.execute(f"SELECT * FROM {self._q(table)} WHERE {where}", args)
                    names = [d[0] for d in cur.description]
                    for row in cur.fetchall():
                        rec = dict(zip(names, row, strict=True))
                        found[tuple(_norm(rec[k]) for k in primary_keys)] = rec
            except Exception as exc:
                raise OnlineStoreError(f"{self.dialect}: {exc}") from exc
        return [found.get(tuple(_norm(v) for v in k)) for k in keys]

    def count(self, table: str) -> int:
        return int(self._run(f"SELECT COUNT(*) FROM {self._q(table)}")[0][0])

    def sync_state(self, table: str) -> dict[str, Any] | None:
        self._ensure_state()
        rows = self._run(f"SELECT source_version, synced_at, mode FROM {self._q(SYNC_STATE)} "
                         f"WHERE {self._q('online_table')} = {self.param}", (table,))
        if not rows:
            return None
        version, synced_at, mode = rows[0]
        return {"source_version": int(version), "synced_at": float(synced_at), "mode": mode}

    def set_sync_state(self, table: str, source_version: int, mode: str, synced_at: float | None = None) -> None:
        self._ensure_state()
        self.upsert(SYNC_STATE, ["online_table", "source_version", "synced_at", "mode"],
                    [(table, source_version, time.time() if synced_at is None else synced_at, mode)], ["online_table"])

    def _ensure_state(self) -> None:
        if self._state_ready:
            return
        columns = [Column("online_table", "string"), Column("source_version", "bigint"),
                   Column("synced_at", "double"), Column("mode", "string")]
        try:
            self.ensure_table(SYNC_STATE, columns, ["online_table"])
        except OnlineStoreError:
            # Two connections creating it at once: PostgreSQL's IF NOT EXISTS can still collide
            # (unique violation on pg_type); the other one created it, so look again.
            self.ensure_table(SYNC_STATE, columns, ["online_table"])
        self._state_ready = True


def _norm(v: Any) -> Any:
    """Keys compare equal across drivers (an int key read back as int, a str as str)."""
    return str(v) if not isinstance(v, str) else v


def redact(url: str) -> str:
    """The store URL as it may appear in reasons and logs: ``shared.redaction.redact``, which
    masks the user-info password and secret query parameters (``?password=``) alike."""
    from shared.redaction import redact as redact_text

    return redact_text(url)
