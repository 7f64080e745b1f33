"""Azure Storage Queues backend (``azure-storage-queue``), the production queues of shared.queues.

The content is sent as it is (the SDK's default: no encode policy), since producers already
write the base64 text the Functions queue trigger decodes (Microsoft Learn, "Azure Queue storage
trigger for Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-storage-queue-trigger).
Visibility timeouts go to the service in whole seconds, rounded up, so a message never comes
back earlier than asked. Update Message and Delete Message answer 404 ``MessageNotFound`` for a
message that is gone and 400 ``PopReceiptMismatch`` for a stale pop receipt; both become
:class:`PopReceiptMismatch`. Queues are created on first
use: a send that meets ``QueueNotFound`` creates the queue and sends once more.
"""

from __future__ import annotations

import contextlib
import math
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.azure_limits import check_message, check_queue_name, check_visibility
from shared.queues import MAX_PEEK, PopReceiptMismatch, QueueService, ReceivedMessage

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueServiceClient


def _seconds(value: float) -> int:
    return math.ceil(value)


def _message(msg: Any) -> ReceivedMessage:
    def at(value: datetime | None) -> datetime:
        return (value or datetime.now(UTC)).astimezone(UTC)

    return ReceivedMessage(
        id=msg.id,
        pop_receipt=msg.pop_receipt or "",
        dequeue_count=int(msg.dequeue_count or 0),
        content=msg.content,
        insertion_time=at(msg.inserted_on),
        expiration_time=at(msg.expires_on),
        next_visible_time=at(msg.next_visible_on),
    )


def _receipt_error(exc: Any, queue: str, message_id: str) -> Exception:
    if getattr(exc, "error_code", None) in ("MessageNotFound", "PopReceiptMismatch") or exc.status_code == 404:
        return PopReceiptMismatch(f"{queue}/{message_id}")
    return exc


class AzureQueueService(QueueService):
    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    def _client(self, queue: str) -> QueueClient:
        with self._lock:
            client = self._clients.get(queue)
            if client is None:
                client = self._clients[queue] = self._service.get_queue_client(check_queue_name(queue))
            return client

    def send(self, queue: str, content: str, *, visibility_delay: float = 0.0) -> str:
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        check_message(content)
        delay = _seconds(check_visibility(visibility_delay, "visibility delay")) or None
        client = self._client(queue)
        try:
            return client.send_message(content, visibility_timeout=delay).id
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "QueueNotFound":
                raise
        with contextlib.suppress(ResourceExistsError):  # another instance created it first
            client.create_queue()
        return client.send_message(content, visibility_timeout=delay).id

    def receive(self, queue: str, *, max_messages: int, visibility_timeout: float) -> list[ReceivedMessage]:
        from azure.core.exceptions import ResourceNotFoundError

        if not 1 <= max_messages <= MAX_PEEK:
            raise ValueError(f"max_messages is 1..{MAX_PEEK}, not {max_messages}")
        timeout = max(1, _seconds(check_visibility(visibility_timeout)))
        try:
            pages = self._client(queue).receive_messages(messages_per_page=max_messages,
                                                         visibility_timeout=timeout, max_messages=max_messages)
            return [_message(m) for m in pages]
        except ResourceNotFoundError:
            return []  # nobody has sent to it yet

    def delete(self, queue: str, message_id: str, pop_receipt: str) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            self._client(queue).delete_message(message_id, pop_receipt)
        except HttpResponseError as exc:
            raise _receipt_error(exc, queue, message_id) from exc

    def update_visibility(self, queue: str, message_id: str, pop_receipt: str, visibility_timeout: float) -> str:
        from azure.core.exceptions import HttpResponseError

        timeout = _seconds(check_visibility(visibility_timeout))
        try:
            updated = self._client(queue).update_message(message_id, pop_receipt, visibility_timeout=timeout)
        except HttpResponseError as exc:
            raise _receipt_error(exc, queue, message_id) from exc
        return updated.pop_receipt

    def count(self, queue: str) -> int:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self._client(queue).get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0

    def peek(self, queue: str, max_messages: int = MAX_PEEK) -> list[ReceivedMessage]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            found = self._client(queue).peek_messages(max_messages=max(1, min(max_messages, MAX_PEEK)))
        except ResourceNotFoundError:
            return []
        return [_message(m) for m in found]
