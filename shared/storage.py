"""Opens the queue and table backends named by the ``REACTOR_STORAGE`` setting.

``sqlite:///path`` is the embedded default. Azure Storage (queues and tables of one
account) is the production backend; it plugs in here behind the same two interfaces.
"""

from __future__ import annotations

from functools import lru_cache

from shared.queues import QueueService
from shared.tables import TableService


def _sqlite_path(url: str) -> str:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"REACTOR_STORAGE={url!r}: expected sqlite:///<path>")
    # sqlite:////abs/path names an absolute path, sqlite:///rel/path a relative one.
    return url[len(prefix):]


@lru_cache(maxsize=8)
def open_queues(url: str) -> QueueService:
    from shared.queues.sqlite import SqliteQueueService

    return SqliteQueueService(_sqlite_path(url))


@lru_cache(maxsize=8)
def open_tables(url: str) -> TableService:
    from shared.tables.sqlite import SqliteTableService

    return SqliteTableService(_sqlite_path(url))
