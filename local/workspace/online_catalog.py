"""Where each published feature table lives online, so that serving can look features up.

Databricks resolves a model's feature lookups to the online tables its feature tables were
published to (Online Feature Store, Lakebase synced tables). The local workspace keeps that
mapping here: publishing registers an entry, a serving endpoint resolves by source table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class OnlineTableRef:
    source_table: str  # catalog.schema.table of the Delta feature table
    online_table: str  # catalog.schema.table of the online table
    store_url: str  # a shared.online_store.OnlineStore URL
    physical_table: str  # the table's name inside that database (shared.online_store.physical_name)
    primary_keys: tuple[str, ...]


class OnlineCatalog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_source: dict[str, OnlineTableRef] = {}

    def register(self, ref: OnlineTableRef) -> None:
        with self._lock:
            self._by_source[ref.source_table] = ref

    def forget(self, source_table: str) -> None:
        with self._lock:
            self._by_source.pop(source_table, None)

    def resolve(self, source_table: str) -> OnlineTableRef | None:
        with self._lock:
            return self._by_source.get(source_table)

    def all(self) -> list[OnlineTableRef]:
        with self._lock:
            return list(self._by_source.values())
