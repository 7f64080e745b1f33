"""What the CLI reads and sends, behind one interface with two backends: the app's storage
(reactor.storage_backend: tables and queues opened as the app opens them) and the app's HTTP API
(reactor.http_backend: the operators' routes with a function key). Both answer with the same
plain dicts the HTTP routes return (handlers/operators.py), so the CLI renders either alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

Page = tuple[list[dict[str, Any]], str | None]  # rows and the continuation token (None: the last page)


class BackendError(Exception):
    """The backend cannot be reached or used (connection, authentication, settings): exit 4."""


class NotFound(LookupError):
    """What was asked for does not exist: exit 3."""


class Refused(ValueError):
    """The app refused a command (its reason is the message)."""


class Backend(ABC):
    @property
    def transport_errors(self) -> tuple[type[BaseException], ...]:
        """What a call raises when the backend cannot be reached: reported as exit 4."""
        return ()

    @abstractmethod
    def status(self) -> list[dict[str, Any]]:
        """shared.overview.status: one summary per model and environment."""

    @abstractmethod
    def rollouts(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        """A page of rollouts: of one endpoint newest first across pages, of all in key order."""

    @abstractmethod
    def rollout(self, endpoint: str, rid: str) -> dict[str, Any]:
        """``{"rollout": row, "analyses": [...]}``; NotFound when the endpoint has no such rollout."""

    @abstractmethod
    def records(self, kind: str | None, status: str | None, *, limit: int, continuation: str | None) -> Page:
        """A page of journal records (of a kind, with a status)."""

    @abstractmethod
    def record(self, kind: str, key: str) -> dict[str, Any]:
        """One journal record; NotFound when there is none (yet)."""

    @abstractmethod
    def rejections(self) -> dict[str, Any]:
        """Counters and recent samples of refused requests, per HTTP status (shared.rejections)."""

    @abstractmethod
    def decisions(self, endpoint: str | None, *, limit: int, continuation: str | None) -> Page:
        """A page of monitor decisions, newest first per endpoint."""

    @abstractmethod
    def send(self, body: bytes) -> str:
        """Put one command (JSON) on the commands queue; the key of its journal record. Refused
        when the command is invalid (nothing is sent)."""
