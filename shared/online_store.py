"""Online feature tables in a relational database: SQLite, PostgreSQL (what Lakebase is) or
MySQL/MariaDB (a third-party online store), through each one's PEP 249 driver.

One small surface for every store: create the table keyed by its primary key, upsert and
delete rows by key, look rows up by key, read a table's columns back, put a fully loaded
staging table in a table's place in one step, and keep a sync watermark (the last source Delta
version copied and when) in a ``_feature_sync_state`` table beside the features, so that
freshness can be checked in the store itself. ``_feature_sync_claims`` holds one writer's claim
per online table, with an expiry, so that two copies of one table never interleave.

Every identifier is quoted as its dialect quotes it (PostgreSQL and SQLite double quotes,
MySQL backticks; the quote character doubled inside) and checked against the dialect's limits
(PostgreSQL "NAMEDATALEN-1 = 63 bytes", MySQL "64 characters", no NUL anywhere; MySQL names
"cannot end with space characters" and hold only Basic Multilingual Plane characters). Drivers
are imported when a store is opened.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.redaction import redact as redact_text
from shared.redaction import url_secrets

SYNC_STATE = "_feature_sync_state"
CLAIMS = "_feature_sync_claims"
_STAGING = "_feature_staging_"
_BATCH = 5000
_MAX_NAME = 63  # the smaller of PostgreSQL's 63 bytes and MySQL's 64 characters
_PLAIN_PART = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_HASH_CHARS = 16

# Generic column types (what Delta/Arrow types reduce to) → each dialect's type.
_TYPES = {
    "sqlite": {"bigint": "INTEGER", "double": "REAL", "string": "TEXT", "key": "TEXT", "boolean": "INTEGER",
               "timestamp": "TEXT"},
    "postgresql": {"bigint": "BIGINT", "double": "DOUBLE PRECISION", "string": "TEXT", "key": "TEXT",
                   "boolean": "BOOLEAN", "timestamp": "TIMESTAMP WITH TIME ZONE"},
    "mysql": {"bigint": "BIGINT", "double": "DOUBLE", "string": "TEXT", "key": "VARCHAR(255)", "boolean": "BOOLEAN",
              "timestamp": "DATETIME(6)"},
}
# How each catalog reports a column's type (SQLite's PRAGMA table_info, information_schema
# ``data_type`` elsewhere), written as _TYPES writes it; MySQL's BOOLEAN is TINYINT(1).
_REPORTED = {"mysql": {"BOOLEAN": "TINYINT"}}


class OnlineStoreError(RuntimeError):
    """The store cannot be reached or refused a statement."""


class InvalidIdentifier(ValueError):
    """A name the store cannot hold as it is (too long, or a character the dialect refuses)."""


def physical_name(online_table: str) -> str:
    """``catalog.schema.table`` → the online table's name in the store: at most 63 characters of
    ``[a-z0-9_]``, a different name for every different Unity Catalog name.

    Unity Catalog names are case-insensitive (stored lowercase), so the name is folded first.
    Parts made of lowercase letters and digits with single inner underscores are joined with
    ``__`` (``main.fs.zones_online`` → ``main__fs__zones_online``): such a name never holds
    ``___`` and splits back into its parts unambiguously. Every other name (``-``, ``__``,
    quotes, non-ASCII, or too long) becomes a readable prefix, ``___`` and 16 hex digits of the
    SHA-256 of the folded name, which no name of the first kind can equal."""
    parts = online_table.lower().split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"online table name {online_table!r} is not catalog.schema.table")
    plain = "__".join(parts)
    if all(_PLAIN_PART.match(p) for p in parts) and len(plain) <= _MAX_NAME:
        return plain
    digest = hashlib.sha256(".".join(parts).encode("utf-8")).hexdigest()[:_HASH_CHARS]
    readable = "__".join(re.sub(r"[^a-z0-9]+", "_", p).strip("_") for p in parts)
    prefix = readable[:_MAX_NAME - 3 - _HASH_CHARS].strip("_") or "t"
    return f"{prefix}___{digest}"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # bigint | double | string | boolean | timestamp


@dataclass(frozen=True)
class TableSchema:
    """A table's columns (name → type as the store reports it) and primary key columns."""

    columns: dict[str, str]
    primary_keys: frozenset[str]

    def differences(self, other: TableSchema) -> list[str]:
        """What ``other`` (the table as it is) lacks or has besides this schema, in words."""
        out = []
        added = [c for c in self.columns if c not in other.columns]
        dropped = [c for c in other.columns if c not in self.columns]
        retyped = [f"{c} {other.columns[c]} → {t}" for c, t in self.columns.items()
                   if c in other.columns and other.columns[c] != t]
        for label, names in (("new columns", added), ("dropped columns", dropped), ("changed types", retyped)):
            if names:
                out.append(f"{label} {names}")
        if self.primary_keys != other.primary_keys:
            out.append(f"primary key {sorted(other.primary_keys)} → {sorted(self.primary_keys)}")
        return out


# The store's own tables: (columns, primary key).
_INTERNAL = {
    SYNC_STATE: ((Column("online_table", "string"), Column("source_version", "bigint"), Column("synced_at", "double"),
                  Column("mode", "string")), ("online_table",)),
    CLAIMS: ((Column("online_table", "string"), Column("writer", "string"), Column("expires_at", "double")),
             ("online_table",)),
}


class OnlineStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._secrets = url_secrets(url)
        self._ready: set[str] = set()
        try:
            self._conn = self._connect(url)
        except ValueError as exc:
            raise ValueError(self._redact(f"online store URL {url}: {exc}")) from None
        except Exception as exc:
            # Not chained: the driver's exception quotes what it could not parse, in clear.
            raise OnlineStoreError(self._redact(f"cannot connect to the online store at {url}: {exc}")) from None

    def _connect(self, url: str) -> Any:
        """A connection through the dialect's driver; ValueError when the URL is unusable."""
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        if scheme == "sqlite":
            import sqlite3

            self.dialect, self.param = "sqlite", "?"
            conn = sqlite3.connect(url[len("sqlite:///"):], timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        if scheme in ("postgresql", "postgres"):
            import psycopg

            self.dialect, self.param = "postgresql", "%s"
            return psycopg.connect(url.replace(parts.scheme + "://", "postgresql://", 1), autocommit=True,
                                   connect_timeout=10)
        if scheme in ("mysql", "mariadb"):
            import pymysql

            self.dialect, self.param = "mysql", "%s"
            password = unquote(parts.password or "")
            if any(ord(ch) > 0xFF for ch in password):
                # PyMySQL encodes the password as latin-1, and its UnicodeEncodeError quotes it.
                raise ValueError("the password has characters outside latin-1, which PyMySQL cannot send")
            return pymysql.connect(
                host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=unquote(parts.username or "root"),
                password=password, database=parts.path.lstrip("/") or None,
                autocommit=True, connect_timeout=10, charset="utf8mb4",
            )
        raise ValueError(f"unsupported online store URL scheme {parts.scheme!r}: use sqlite, postgresql or mysql")

    def _redact(self, text: str) -> str:
        """``text`` as it may be stored, served or logged: shared.redaction, with this store's
        URL secrets (drivers quote parts of the URL they parsed)."""
        return redact_text(text, self._secrets)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _q(self, ident: str) -> str:
        """``ident`` quoted for this dialect; InvalidIdentifier if the dialect cannot hold it."""
        if not ident or "\x00" in ident:
            raise InvalidIdentifier(f"{ident!r}: a name must not be empty or hold a NUL character")
        if self.dialect == "postgresql" and len(ident.encode("utf-8")) > 63:
            raise InvalidIdentifier(f"{ident!r} is {len(ident.encode('utf-8'))} bytes long; PostgreSQL names hold "
                                    "at most 63 bytes")
        if self.dialect == "mysql":
            if len(ident) > 64:
                raise InvalidIdentifier(f"{ident!r} is {len(ident)} characters long; MySQL names hold at most 64")
            if ident.endswith(" ") or any(ord(ch) > 0xFFFF for ch in ident):
                raise InvalidIdentifier(f"{ident!r}: MySQL names cannot end with a space or hold characters "
                                        "outside the Basic Multilingual Plane")
            return "`" + ident.replace("`", "``") + "`"
        return '"' + ident.replace('"', '""') + '"'

    def _run(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            with closing(self._conn.cursor()) as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        except Exception as exc:
            raise OnlineStoreError(self._redact(f"{self.dialect}: {exc}")) from exc

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
            raise OnlineStoreError(self._redact(f"{self.dialect}: {exc}")) from exc

    def _column_type(self, column: Column, primary_keys: Sequence[str]) -> str:
        types = _TYPES[self.dialect]
        return types["key"] if column.name in primary_keys and column.type == "string" else types[column.type]

    def _reported(self, declared: str) -> str:
        base = declared.split("(", 1)[0].strip().upper()
        return _REPORTED.get(self.dialect, {}).get(base, base)

    def ensure_table(self, table: str, columns: Sequence[Column], primary_keys: Sequence[str]) -> None:
        if not primary_keys:
            raise ValueError(f"online table {table} needs a primary key")
        cols = ", ".join(f"{self._q(c.name)} {self._column_type(c, primary_keys)}" for c in columns)
        pk = ", ".join(self._q(k) for k in primary_keys)
        self._run(f"CREATE TABLE IF NOT EXISTS {self._q(table)} ({cols}, PRIMARY KEY ({pk}))")

    def schema_of(self, columns: Sequence[Column], primary_keys: Sequence[str]) -> TableSchema:
        """The schema ``ensure_table`` gives these columns here, as ``schema`` reads it back.
        InvalidIdentifier names a column this store cannot hold."""
        for c in columns:
            try:
                self._q(c.name)
            except InvalidIdentifier as exc:
                raise InvalidIdentifier(f"column {exc}") from exc
        return TableSchema({c.name: self._reported(self._column_type(c, primary_keys)) for c in columns},
                           frozenset(primary_keys))

    def schema(self, table: str) -> TableSchema | None:
        """The table's columns and primary key as the store's catalog has them; None if it does not exist."""
        if self.dialect == "sqlite":
            info = self._run(f"PRAGMA table_info({self._q(table)})")
            if not info:
                return None
            return TableSchema({r[1]: self._reported(r[2]) for r in info}, frozenset(r[1] for r in info if r[5]))
        where = "table_schema = " + ("current_schema()" if self.dialect == "postgresql" else "DATABASE()")
        cols = self._run(f"SELECT column_name, data_type FROM information_schema.columns WHERE {where} "
                         f"AND table_name = {self.param} ORDER BY ordinal_position", (table,))
        if not cols:
            return None
        keys = self._run("SELECT k.column_name FROM information_schema.table_constraints c JOIN "
                         "information_schema.key_column_usage k USING (constraint_schema, constraint_name, "
                         f"table_schema, table_name) WHERE c.constraint_type = 'PRIMARY KEY' AND c.{where} "
                         f"AND c.table_name = {self.param}", (table,))
        return TableSchema({r[0]: self._reported(r[1]) for r in cols}, frozenset(r[0] for r in keys))

    @staticmethod
    def staging_table(run: str) -> str:
        """The table one copy run (``run``: hex digits) loads before ``replace`` swaps it in."""
        if not re.fullmatch(r"[0-9a-f]{1,32}", run):
            raise ValueError(f"a run id is hex digits, got {run!r}")
        return _STAGING + run

    def drop_staging(self, run: str) -> None:
        """Remove what a copy run left behind (a writer that stopped before ``replace``)."""
        staging = self.staging_table(run)
        self.drop_table(staging)
        self.drop_table(staging + "_old")

    def replace(self, table: str, staging: str) -> None:
        """Put the loaded ``staging`` table in ``table``'s place in one step: readers see the old
        table or the new one (rows, columns and key), never a half-loaded one; the old one is gone.
        PostgreSQL and SQLite: DROP TABLE and ALTER TABLE ... RENAME in one transaction (their DDL
        is transactional). MySQL commits DDL at once, but one RENAME TABLE renames all the tables
        it names atomically, so the old table is renamed away and dropped after."""
        if self.dialect != "mysql":
            self._transaction([f"DROP TABLE IF EXISTS {self._q(table)}",
                               f"ALTER TABLE {self._q(staging)} RENAME TO {self._q(table)}"])
            return
        if self.schema(table) is None:
            self._run(f"RENAME TABLE {self._q(staging)} TO {self._q(table)}")
            return
        old = staging + "_old"
        self._run(f"RENAME TABLE {self._q(table)} TO {self._q(old)}, {self._q(staging)} TO {self._q(table)}")
        self.drop_table(old)

    def _transaction(self, statements: Sequence[str]) -> None:
        """PostgreSQL and SQLite: all of ``statements`` or none."""
        try:
            if self.dialect == "postgresql":
                with self._conn.transaction(), closing(self._conn.cursor()) as cur:
                    for sql in statements:
                        cur.execute(sql)
                return
            with closing(self._conn.cursor()) as cur:
                cur.execute("BEGIN")
                try:
                    for sql in statements:
                        cur.execute(sql)
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
        except Exception as exc:
            raise OnlineStoreError(self._redact(f"{self.dialect}: {exc}")) from exc

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
                raise OnlineStoreError(self._redact(f"{self.dialect}: {exc}")) from exc
        return [found.get(tuple(_norm(v) for v in k)) for k in keys]

    def count(self, table: str) -> int:
        return int(self._run(f"SELECT COUNT(*) FROM {self._q(table)}")[0][0])

    def sync_state(self, table: str) -> dict[str, Any] | None:
        self._ensure_internal(SYNC_STATE)
        rows = self._run(f"SELECT source_version, synced_at, mode FROM {self._q(SYNC_STATE)} "
                         f"WHERE {self._q('online_table')} = {self.param}", (table,))
        if not rows:
            return None
        version, synced_at, mode = rows[0]
        return {"source_version": int(version), "synced_at": float(synced_at), "mode": mode}

    def set_sync_state(self, table: str, source_version: int, mode: str, synced_at: float | None = None) -> None:
        self._ensure_internal(SYNC_STATE)
        self.upsert(SYNC_STATE, ["online_table", "source_version", "synced_at", "mode"],
                    [(table, source_version, time.time() if synced_at is None else synced_at, mode)], ["online_table"])

    def claim(self, table: str, writer: str, now: float, seconds: float) -> tuple[bool, str | None]:
        """Claim the one right to write ``table`` until ``now + seconds``; a claim that has
        expired is free, so a writer that stopped never blocks the table for longer.
        Returns (held, other): held when ``writer`` holds the claim now; ``other`` is then the
        expired writer it took over from (whose leftovers may go), else the writer that holds it."""
        self._ensure_internal(CLAIMS)
        where = f"{self._q('online_table')} = {self.param}"
        select = f"SELECT {self._q('writer')} FROM {self._q(CLAIMS)} WHERE {where}"
        before = self._run(select, (table,))
        if not before:
            self.upsert(CLAIMS, ["online_table"], [(table,)], ["online_table"])  # a free claim row
        # One conditional UPDATE decides between racing writers: the row lock makes the second
        # one see the first one's unexpired claim.
        self._run(f"UPDATE {self._q(CLAIMS)} SET {self._q('writer')} = {self.param}, {self._q('expires_at')} = "
                  f"{self.param} WHERE {where} AND ({self._q('writer')} = {self.param} OR {self._q('writer')} IS NULL"
                  f" OR {self._q('expires_at')} < {self.param})", (writer, now + seconds, table, writer, now))
        holder = self._run(select, (table,))[0][0]
        previous = before[0][0] if before else None
        if holder == writer:
            return True, previous if previous not in (None, writer) else None
        return False, holder

    def renew(self, table: str, writer: str, now: float, seconds: float) -> bool:
        """Extend ``writer``'s claim on ``table`` to ``now + seconds``; False when it no longer
        holds it (another writer took the expired claim over, or it was released)."""
        self._ensure_internal(CLAIMS)
        where = f"{self._q('online_table')} = {self.param}"
        self._run(f"UPDATE {self._q(CLAIMS)} SET {self._q('expires_at')} = {self.param} WHERE {where} AND "
                  f"{self._q('writer')} = {self.param}", (now + seconds, table, writer))
        holder = self._run(f"SELECT {self._q('writer')} FROM {self._q(CLAIMS)} WHERE {where}", (table,))
        return bool(holder) and holder[0][0] == writer

    def release(self, table: str, writer: str) -> None:
        """Give up ``writer``'s claim on ``table`` (nothing happens if another writer holds it)."""
        self._ensure_internal(CLAIMS)
        self._run(f"DELETE FROM {self._q(CLAIMS)} WHERE {self._q('online_table')} = {self.param} AND "
                  f"{self._q('writer')} = {self.param}", (table, writer))

    def _ensure_internal(self, name: str) -> None:
        if name in self._ready:
            return
        columns, key = _INTERNAL[name]
        try:
            self.ensure_table(name, columns, key)
        except OnlineStoreError:
            # Two connections creating it at once: PostgreSQL's IF NOT EXISTS can still collide
            # (unique violation on pg_type); the other one created it, so look again.
            self.ensure_table(name, columns, key)
        self._ready.add(name)


def _norm(v: Any) -> Any:
    """Keys compare equal across drivers (an int key read back as int, a str as str)."""
    return str(v) if not isinstance(v, str) else v


def redact(url: str) -> str:
    """The store URL as it may appear in reasons and logs: ``shared.redaction.redact`` with the
    URL's own secrets (``url_secrets``), so a password is masked however malformed the URL is."""
    return redact_text(url, url_secrets(url))
