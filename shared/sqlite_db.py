"""One SQLite file shared by processes: WAL mode, immediate transactions, a busy timeout.

:func:`SqliteDb.open` gives every backend of one file the same object (per process), so the
table and queue backends of one file can write in one transaction: a ``transaction()`` opened
inside another on the same thread is a savepoint of it (all or nothing on its own, committed
only with the outer one). That is what lets an accepted webhook record its delivery and
enqueue its work with one commit (shared.storage.one_commit).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


class SqliteDb:
    def __init__(self, path: str, schema: str = "") -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        self._schemas: set[str] = set()
        self._schema_lock = threading.Lock()
        if schema:
            self.ensure(schema)

    @staticmethod
    @lru_cache(maxsize=32)
    def _shared(path: str) -> SqliteDb:
        return SqliteDb(path)

    @classmethod
    def open(cls, path: str, schema: str) -> SqliteDb:
        """The process's one ``SqliteDb`` for ``path`` (its file resolved), with ``schema`` applied."""
        db = cls._shared(str(Path(path).resolve()))
        db.ensure(schema)
        return db

    def ensure(self, schema: str) -> None:
        with self._schema_lock:
            if schema not in self._schemas:
                # executescript commits on its own, so it runs outside transaction().
                self._conn().executescript(schema)
                self._schemas.add(schema)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so that a read-modify-write
            # takes the write lock at its start and two processes never interleave inside it.
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self, *, savepoint: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction, or inside one a savepoint of it. ``savepoint=False`` joins the outer
        transaction as it is: for one statement, which SQLite applies whole or not at all."""
        conn = self._conn()
        depth = self._local.depth
        if depth and not savepoint:
            yield conn
            return
        begin, commit, rollback = (("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") if depth == 0 else
                                   (f"SAVEPOINT s{depth}", f"RELEASE s{depth}", f"ROLLBACK TO s{depth}"))
        conn.execute(begin)
        self._local.depth = depth + 1
        try:
            yield conn
        except BaseException:
            conn.execute(rollback)
            if depth:
                conn.execute(commit)  # a savepoint rolled back to is still open until released
            raise
        finally:
            self._local.depth = depth
        conn.execute(commit)
