"""Queues: one interface, a backend per storage kind.

The interface follows Azure Storage Queues (the production backend): a message becomes
invisible for a visibility timeout when received, carries a dequeue count that grows with
every receive, is deleted with the pop receipt of its latest receive, and can be sent with
an initial visibility delay. Producers follow the Functions queue trigger's default
``messageEncoding: base64`` (Microsoft Learn, "Azure Queue storage trigger for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger):
:func:`encode_json` makes the wire text, and the trigger side decodes it.
"""

from __future__ import annotations

import base64
import binascii
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

COMMANDS_QUEUE = "reactor-commands"
ROLLOUT_QUEUE = "reactor-rollout"
POISON_SUFFIX = "-poison"
MAX_PEEK = 32  # Azure's limit for one receive or peek


class PopReceiptMismatch(LookupError):
    """The message is gone or was received again since (Azure: 404 MessageNotFound)."""


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    pop_receipt: str
    dequeue_count: int
    content: str
    insertion_time: datetime
    expiration_time: datetime
    next_visible_time: datetime


class QueueService(ABC):
    """A storage account's queues. Content is the wire text (base64 by convention)."""

    @abstractmethod
    def send(self, queue: str, content: str, *, visibility_delay: float = 0.0) -> str:
        """Add a message, invisible for ``visibility_delay`` seconds; returns its id."""

    @abstractmethod
    def receive(self, queue: str, *, max_messages: int, visibility_timeout: float) -> list[ReceivedMessage]:
        """Take up to ``max_messages`` visible messages and hide them for ``visibility_timeout``."""

    @abstractmethod
    def delete(self, queue: str, message_id: str, pop_receipt: str) -> None:
        """Remove a received message. Raises PopReceiptMismatch if it was received again."""

    @abstractmethod
    def update_visibility(self, queue: str, message_id: str, pop_receipt: str, visibility_timeout: float) -> str:
        """Hide a received message for ``visibility_timeout`` more seconds; returns the new pop receipt."""

    @abstractmethod
    def count(self, queue: str) -> int:
        """Messages in the queue, visible or not (Azure: approximate_message_count)."""

    @abstractmethod
    def peek(self, queue: str, max_messages: int = MAX_PEEK) -> list[ReceivedMessage]:
        """Up to 32 messages visible now, oldest first, without receiving them (Azure's Peek
        Messages: hidden messages are not shown, and the pop receipt is empty)."""


def encode_json(payload: Any) -> str:
    """JSON text, base64-encoded as the queue trigger expects."""
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode("ascii")


def decode_content(content: str) -> bytes:
    """Undo the base64 wire encoding. Raises ValueError for text that is not base64."""
    try:
        return base64.b64decode(content.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"message is not valid base64: {exc}") from exc


def enqueue(queues: QueueService, queue: str, payload: Any, *, delay: float = 0.0) -> str:
    """Send ``payload`` as a base64 JSON message; returns the message id."""
    return queues.send(queue, encode_json(payload), visibility_delay=delay)
