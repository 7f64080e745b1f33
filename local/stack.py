"""The whole product on one machine: a real MLflow server, the local workspace and the
local Functions host running the real ``function_app``. Used by the demo and the scenario
tests; never imported by the app.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local.host import LocalHost
from local.identity import ManagedIdentityEndpoint
from local.mlflow_server import MlflowServer
from local.workspace import LocalWorkspace
from shared.settings import APP_ROOT

WEBHOOK_SECRET = "local-webhook-secret"
WORKSPACE_TOKEN = "local-token"
HOST_KEY = "local-host-key"
"""The local host's ``default`` host key: callers of FUNCTION-level views send it as ``x-functions-key``."""


def app_settings(*, data_dir: Path, policy: Path, mlflow_url: str, workspace_url: str,
                 watch_schedule: str = "0 */5 * * * *", repair_schedule: str = "*/5 * * * * *",
                 monitor_schedule: str = "0 */5 * * * *",
                 identity: ManagedIdentityEndpoint | None = None, client_id: str | None = None,
                 azure_storage: str | None = None) -> dict[str, str]:
    """The app settings a Function App would have, pointing at the local parts.

    With ``azure_storage`` (a connection string: Azurite's) state and queues live in Azure
    Storage, reached as in Azure: ``REACTOR_STORAGE=azure`` and the ``AzureWebJobsStorage``
    connection the triggers listen on; otherwise in an SQLite file in ``data_dir``.

    With ``identity`` the app has no ``DATABRICKS_TOKEN``: it gets the App Service identity
    variables of that stand-in instead (``client_id``: a user-assigned identity's).
    """
    settings = {
        "REACTOR_STORAGE": f"sqlite:///{data_dir / 'reactor.db'}",
        "REACTOR_POLICY_FILE": str(policy),
        "MLFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DATABRICKS_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_REGISTRY_URI": mlflow_url,
        "DATABRICKS_HOST": workspace_url,
        "DATABRICKS_TOKEN": WORKSPACE_TOKEN,
        "DATABRICKS_RETRY_TIMEOUT_SECONDS": "20",
        "DATABRICKS_WAREHOUSE_ID": "local-warehouse",
        "REGISTRY_WATCH_SCHEDULE": watch_schedule,
        "REACTOR_REPAIR_SCHEDULE": repair_schedule,
        "REACTOR_MONITOR_SCHEDULE": monitor_schedule,
        "ROLLOUT_BACKOFF_BASE_SECONDS": "0.25",
        "ROLLOUT_BACKOFF_CAP_SECONDS": "2",
        # The key store of the local host (local/host.py, "Keys and auth levels"), not an Azure app setting.
        "LocalKeyStore.host.function.default": HOST_KEY,
    }
    if azure_storage is not None:
        settings.update(REACTOR_STORAGE="azure", AzureWebJobsStorage=azure_storage)
    if identity is not None:
        del settings["DATABRICKS_TOKEN"]
        settings.update(identity.env(client_id))
    return settings


@dataclass
class Platform:
    """What stays up across scenarios: the registry and the workspace."""

    mlflow: MlflowServer
    workspace: LocalWorkspace


@contextmanager
def platform(data_dir: Path, identity: ManagedIdentityEndpoint | None = None) -> Iterator[Platform]:
    """The MLflow server and the workspace; with ``identity`` the workspace accepts only its tokens."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with MlflowServer(data_dir=data_dir / "mlflow", port=0) as srv:
        ws = LocalWorkspace(port=0, token=WORKSPACE_TOKEN, registry_uri=srv.url, data_dir=data_dir / "workspace",
                            identity=identity)
        ws.start()
        try:
            yield Platform(srv, ws)
        finally:
            ws.stop()


@contextmanager
def function_host(settings: dict[str, str]) -> Iterator[LocalHost]:
    """Run the real function_app with ``settings`` in this process's environment."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    host = LocalHost(app_dir=APP_ROOT, port=0).start()
    try:
        yield host
    finally:
        host.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
