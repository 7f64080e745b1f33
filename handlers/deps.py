"""What a handler needs, built once per process from the app settings.

Handlers take a ``Deps``; tests build one over their own storage and clients. Nothing here
connects at import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.policy import Policy, load_policy
from shared.queues import QueueService
from shared.settings import Settings
from shared.storage import open_queues, open_tables
from shared.tables import TableService


@dataclass
class Deps:
    settings: Settings
    tables: TableService
    queues: QueueService
    workspace: Callable[[], Any]
    registry: Callable[[], Any]
    clock: Callable[[], float] = field(default=time.time)

    def policy(self) -> Policy:
        return load_policy(self.settings.policy_file, self.settings.registry_uri)


def from_settings(settings: Settings) -> Deps:
    from shared.workspace import registry_client, workspace_client

    return Deps(
        settings=settings,
        tables=open_tables(settings.storage),
        queues=open_queues(settings.storage),
        workspace=workspace_client,
        registry=lambda: registry_client(settings.registry_uri),
    )


def current() -> Deps:
    """Deps for the running app, from the environment as it is now."""
    return from_settings(Settings.from_env())
