"""The one place that builds clients for Databricks: ``WorkspaceClient`` and ``MlflowClient``.

Authentication, in order:
1. ``DATABRICKS_TOKEN`` (a PAT; also how the local workspace is reached);
2. otherwise the Function App's Azure identity through azure-identity's
   ``DefaultAzureCredential`` (managed identity in Azure, developer login locally), plugged
   in as a custom credentials strategy: databricks-sdk 0.156 has no ``azure-msi`` auth
   type (reference databricks-api.md §7.2, §7.4).

The SDK's per-call retry budget defaults to 300 s (§8); a function step must stay short, so
it is capped by ``DATABRICKS_RETRY_TIMEOUT_SECONDS`` (default 60). Heavy imports happen here,
lazily, never at ``import function_app``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from mlflow import MlflowClient

# Entra ID application of Azure Databricks (reference databricks-api.md §7.3).
DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def _azure_identity_strategy():  # -> CredentialsStrategy
    from azure.identity import DefaultAzureCredential
    from databricks.sdk.credentials_provider import CredentialsStrategy

    class AzureIdentity(CredentialsStrategy):
        def __init__(self) -> None:
            self._credential = DefaultAzureCredential()

        def auth_type(self) -> str:
            return "azure-identity"

        def __call__(self, cfg):  # called once per client; the header factory per request
            def headers() -> dict[str, str]:
                # azure-identity caches and refreshes the token; the SDK caches nothing.
                return {"Authorization": f"Bearer {self._credential.get_token(DATABRICKS_SCOPE).token}"}

            return headers

    return AzureIdentity()


def workspace_client() -> WorkspaceClient:
    """The client for the workspace the app settings name (one per distinct setting values)."""
    host = os.environ.get("DATABRICKS_HOST")
    if not host:
        raise RuntimeError("DATABRICKS_HOST is not set")
    retry = float(os.environ.get("DATABRICKS_RETRY_TIMEOUT_SECONDS", "60"))
    return _workspace_client(host, os.environ.get("DATABRICKS_TOKEN") or None, retry)


@lru_cache(maxsize=4)
def _workspace_client(host: str, token: str | None, retry: float) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    common = {"host": host, "retry_timeout_seconds": retry, "http_timeout_seconds": min(60.0, retry)}
    if token:
        cfg = Config(token=token, auth_type="pat", **common)
    else:
        cfg = Config(credentials_strategy=_azure_identity_strategy(), **common)
    return WorkspaceClient(config=cfg)


@lru_cache(maxsize=4)
def registry_client(registry_uri: str | None = None) -> MlflowClient:
    """``MlflowClient`` for versions and aliases: ``databricks-uc`` or ``databricks`` in Azure,
    an ``http://`` MLflow server locally."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
