"""State tables: one interface, a backend per storage kind.

The interface follows Azure Table Storage (the production backend): entities addressed by
partition key and row key, a new ETag on every write, conditional update and delete that
fail when the ETag no longer matches (HTTP 412), insert that fails when the entity exists
(HTTP 409). That optimistic concurrency is what the endpoint lease and the rollout state
machine rely on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


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
    def query(self, table: str, partition_key: str | None = None, **equals: Any) -> list[Entity]:
        """Entities of a partition (or of the table) whose fields equal ``equals``, by keys."""
