"""The one place that builds clients for Databricks, and the one identity they all use.

Authentication of every Databricks call (serving, Unity Catalog, feature store, SQL and the
registry), in order:
1. ``DATABRICKS_TOKEN`` (a PAT; also how the local workspace is reached in its PAT mode);
2. otherwise the Function App's Azure identity, one azure-identity credential per process:
   ``ManagedIdentityCredential`` when App Service's ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``
   are set (``AZURE_CLIENT_ID`` selects a user-assigned identity), else
   ``DefaultAzureCredential`` (a developer login locally). Tokens are for the Azure Databricks
   resource (Azure Databricks, "Get Microsoft Entra ID tokens for service principals",
   https://learn.microsoft.com/en-us/azure/databricks/dev-tools/service-prin-aad-token); azure-identity
   caches and refreshes them.
   databricks-sdk 0.156 has no ``azure-msi`` auth type, so the credential is plugged in as a
   custom credentials strategy (``databricks/sdk/credentials_provider.py``, https://github.com/databricks/databricks-sdk-py).

The registry (``registry_client``), by ``MLFLOW_REGISTRY_URI``:
- ``databricks-uc``: Unity Catalog's model API (Databricks REST API, "Registered models",
  https://docs.databricks.com/api/workspace/registeredmodels) through the same ``WorkspaceClient``
  (``shared.registry.UnityCatalogRegistry``). Chosen over MLflow's UC store because MLflow's
  Databricks stores find credentials on their own (``get_databricks_host_creds``: environment
  variables, ``~/.databrickscfg`` or databricks-sdk's default chain, which has no managed
  identity), so they could only be handed this credential through ``DATABRICKS_TOKEN`` in
  ``os.environ`` or by replacing private store attributes. Through the SDK, registry calls get
  the serving calls' header factory, retry budget and error classes.
- ``databricks`` (the workspace registry): MLflow's REST store for that API, asking
  ``host_creds`` for the host and a current token before every request; nothing goes into
  the environment.
- anything else (an ``http://`` MLflow server, ``sqlite:``): ``MlflowClient``, which
  authenticates as MLflow does for that server.

The SDK's per-call retry budget (``Config.retry_timeout_seconds``) defaults to 300 s; a function step must stay
short, so it is capped by ``DATABRICKS_RETRY_TIMEOUT_SECONDS`` (default 60). Heavy imports happen here,
lazily, never at ``import function_app``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from databricks.sdk import WorkspaceClient
    from mlflow.utils.rest_utils import MlflowHostCreds

# Entra ID application of Azure Databricks (Azure Databricks, "Get Microsoft Entra ID tokens for service
# principals", https://learn.microsoft.com/en-us/azure/databricks/dev-tools/service-prin-aad-token).
DATABRICKS_SCOPE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def azure_credential() -> TokenCredential:
    """The process's Azure credential (one per distinct identity settings, so one in Azure)."""
    env = os.environ
    app_service = bool(env.get("IDENTITY_ENDPOINT") and env.get("IDENTITY_HEADER"))
    return _azure_credential(app_service, env.get("IDENTITY_ENDPOINT", ""), env.get("AZURE_CLIENT_ID") or None)


@lru_cache(maxsize=4)
def _azure_credential(app_service: bool, endpoint: str, client_id: str | None) -> TokenCredential:
    # ``endpoint`` is only part of the cache key: the credential reads the variables itself.
    if app_service:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=client_id)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=client_id)


def bearer_token() -> str:
    """The token for the next Databricks request: the PAT, or a current Entra ID token."""
    return os.environ.get("DATABRICKS_TOKEN") or azure_credential().get_token(DATABRICKS_SCOPE).token


def _azure_identity_strategy(credential: TokenCredential) -> Any:  # -> CredentialsStrategy
    from databricks.sdk.credentials_provider import CredentialsStrategy

    class AzureIdentity(CredentialsStrategy):
        def auth_type(self) -> str:
            return "azure-identity"

        def __call__(self, cfg: Any) -> Any:  # called once per client; the header factory per request
            def headers() -> dict[str, str]:
                # azure-identity caches and refreshes the token; the SDK caches nothing.
                return {"Authorization": f"Bearer {credential.get_token(DATABRICKS_SCOPE).token}"}

            return headers

    return AzureIdentity()


def _host() -> str:
    host = os.environ.get("DATABRICKS_HOST")
    if not host:
        raise RuntimeError("DATABRICKS_HOST is not set")
    return host


def workspace_client() -> WorkspaceClient:
    """The client for the workspace the app settings name (one per distinct setting values)."""
    retry = float(os.environ.get("DATABRICKS_RETRY_TIMEOUT_SECONDS", "60"))
    token = os.environ.get("DATABRICKS_TOKEN") or None
    return _workspace_client(_host(), token, retry, None if token else azure_credential())


@lru_cache(maxsize=4)
def _workspace_client(host: str, token: str | None, retry: float,
                      credential: TokenCredential | None = None) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    common = {"host": host, "retry_timeout_seconds": retry, "http_timeout_seconds": min(60.0, retry)}
    if token:
        cfg = Config(token=token, auth_type="pat", **common)
    else:
        assert credential is not None  # workspace_client passes one whenever there is no token
        cfg = Config(credentials_strategy=_azure_identity_strategy(credential), **common)
    return WorkspaceClient(config=cfg)


def host_creds() -> MlflowHostCreds:
    """What MLflow's REST store sends a Databricks request with, built afresh for each request."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(_host(), token=bearer_token())


def registry_client(registry_uri: str | None = None) -> Any:
    """The registry client ``shared.registry`` works with, for ``registry_uri`` (module doc)."""
    if registry_uri == "databricks-uc":
        from shared.registry import UnityCatalogRegistry

        return UnityCatalogRegistry(workspace_client())
    if registry_uri == "databricks":
        from mlflow.store.model_registry.rest_store import RestStore

        return RestStore(host_creds)
    return _mlflow_client(registry_uri)


@lru_cache(maxsize=4)
def _mlflow_client(registry_uri: str | None) -> Any:  # -> MlflowClient
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
