"""Storage connections resolved from app settings the way the Functions host resolves them.

A binding's ``connection`` names a setting (Microsoft Learn, "Guidance for developing Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference):

1. the host looks for ``AzureWebJobs<name>`` first, then ``<name>`` itself (the WebJobs SDK's
   ``GetWebJobsConnectionStringSection``); a setting with a value is a connection string;
2. otherwise the settings ``<name>__<property>`` (a double underscore ends the prefix) form an
   identity-based connection: ``__queueServiceUri`` (alias ``__serviceUri``) and
   ``__tableServiceUri``, or, for ``AzureWebJobsStorage`` only, ``__accountName`` (global DNS
   suffix); ``__credential=managedidentity`` with optional ``__clientId`` or
   ``__managedIdentityResourceId`` for a user-assigned identity; locally ``__tenantId`` +
   ``__clientId`` + ``__clientSecret``; with no ``__credential``, the developer's identity
   (``DefaultAzureCredential``).

``UseDevelopmentStorage=true`` is expanded to Azurite's well-known account here, because the
two SDKs parse its variants differently (azure-storage-queue refuses ``...=True``,
azure-data-tables a trailing ``;``). Anything malformed raises
:class:`ConnectionSettingError` naming the setting, so the app stops at start, not at the first
message. Nothing here imports an Azure SDK until a client is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.settings import SettingError

DEFAULT_CONNECTION = "AzureWebJobsStorage"
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_CONNECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


class ConnectionSettingError(SettingError):
    """A storage connection's settings are missing or malformed; ``setting`` names the culprit."""


def development_storage(host: str = "127.0.0.1", blob: int = 10000, queue: int = 10001, table: int = 10002) -> str:
    """The explicit connection string of Azurite's account (what UseDevelopmentStorage=true means)."""
    return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://{host}:{blob}/{DEV_ACCOUNT};QueueEndpoint=http://{host}:{queue}/{DEV_ACCOUNT};"
            f"TableEndpoint=http://{host}:{table}/{DEV_ACCOUNT};")


@dataclass(frozen=True)
class StorageConnection:
    """One storage account as a binding's ``connection`` names it. ``setting`` is where it came
    from; a connection string is never shown (it holds the account key)."""

    setting: str
    connection_string: str | None = None
    queue_url: str | None = None
    table_url: str | None = None
    credential: str | None = None  # "managedidentity", "clientsecret" or None (developer identity)
    client_id: str | None = None
    resource_id: str | None = None
    tenant_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:
        where = "connection string" if self.connection_string else f"queue={self.queue_url} table={self.table_url}"
        return f"StorageConnection({self.setting}: {where}, credential={self.credential})"

    def _token_credential(self) -> Any:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential, ManagedIdentityCredential

        if self.credential == "managedidentity":
            if self.resource_id:
                return ManagedIdentityCredential(identity_config={"resource_id": self.resource_id})
            return ManagedIdentityCredential(client_id=self.client_id)  # None: the system-assigned identity
        if self.credential == "clientsecret":
            assert self.tenant_id and self.client_id and self.client_secret
            return ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret)
        return DefaultAzureCredential()

    def queue_service(self) -> Any:
        from azure.storage.queue import QueueServiceClient

        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string)
        if not self.queue_url:
            raise ConnectionSettingError(f"{self.setting}__queueServiceUri", "is not set (queues need it)")
        return QueueServiceClient(account_url=self.queue_url, credential=self._token_credential())

    def table_service(self) -> Any:
        from azure.data.tables import TableServiceClient

        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string)
        if not self.table_url:
            raise ConnectionSettingError(f"{self.setting}__tableServiceUri", "is not set (tables need it)")
        return TableServiceClient(endpoint=self.table_url, credential=self._token_credential())


def _connection_string(setting: str, value: str) -> str:
    text = value.strip()
    if re.fullmatch(r"(?i)UseDevelopmentStorage=true;?", text):
        return development_storage()
    parts = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
    if not ({"AccountName", "AccountKey"} <= parts.keys() or "SharedAccessSignature" in parts):
        raise ConnectionSettingError(setting, "is not a storage connection string (expected AccountName and "
                                              "AccountKey, or SharedAccessSignature, or UseDevelopmentStorage=true)")
    return text


def _service_url(setting: str, value: str) -> str:
    url = urlsplit(value.strip())
    if url.scheme not in ("https", "http") or not url.netloc or url.query or url.fragment:
        raise ConnectionSettingError(setting, f"{value!r} is not a service URL like https://<account>.queue.core.windows.net")
    return value.strip().rstrip("/")


def resolve(connection: str, env: Mapping[str, str]) -> StorageConnection:
    """The storage account a binding's ``connection`` names, read from ``env`` as the host does."""
    if not _CONNECTION_NAME.fullmatch(connection):
        raise ConnectionSettingError(connection, "is not a valid connection name")
    # The first of AzureWebJobs<name> and <name> that exists (a value, or __ children) wins.
    for name in (f"AzureWebJobs{connection}", connection):
        if env.get(name, "").strip():
            return StorageConnection(name, connection_string=_connection_string(name, env[name]))
        prefix = name + "__"
        props = {k[len(prefix):].lower(): v.strip() for k, v in env.items() if k.startswith(prefix) and v.strip()}
        if props:
            return _identity_based(name, props)
    raise ConnectionSettingError(connection, "is not set: give a connection string, or identity-based settings "
                                             f"{connection}__queueServiceUri and {connection}__tableServiceUri"
                                             + (f" (or {connection}__accountName)"
                                                if connection == DEFAULT_CONNECTION else ""))


def _identity_based(name: str, props: dict[str, str]) -> StorageConnection:
    prefix = name + "__"
    queue_url = props.get("queueserviceuri") or props.get("serviceuri")
    table_url = props.get("tableserviceuri")
    if "accountname" in props:
        account = props["accountname"]
        if name != DEFAULT_CONNECTION:
            raise ConnectionSettingError(prefix + "accountName", f"works only for {DEFAULT_CONNECTION}; "
                                                                 "use __queueServiceUri and __tableServiceUri")
        if not _ACCOUNT_NAME.fullmatch(account):
            raise ConnectionSettingError(prefix + "accountName", f"{account!r} is not a storage account name "
                                                                 "(3-24 lower-case letters and digits)")
        queue_url = queue_url or f"https://{account}.queue.core.windows.net"
        table_url = table_url or f"https://{account}.table.core.windows.net"
    if queue_url is None and table_url is None:
        raise ConnectionSettingError(prefix + "queueServiceUri", "is not set (nor any service URI of this connection)")
    queue_url = queue_url and _service_url(prefix + "queueServiceUri", queue_url)
    table_url = table_url and _service_url(prefix + "tableServiceUri", table_url)
    credential = props.get("credential", "").lower() or None
    client_id, resource_id = props.get("clientid"), props.get("managedidentityresourceid")
    secret, tenant = props.get("clientsecret"), props.get("tenantid")
    if credential not in (None, "managedidentity"):
        raise ConnectionSettingError(prefix + "credential", f"{props['credential']!r}: the one value it takes is "
                                                            "managedidentity")
    if client_id and resource_id:
        raise ConnectionSettingError(prefix + "clientId", "and __managedIdentityResourceId are exclusive: set one")
    if secret or tenant:
        if credential:
            raise ConnectionSettingError(prefix + "clientSecret", "is for local development only, not with "
                                                                  "__credential=managedidentity")
        if not (secret and tenant and client_id):
            missing = [n for n, v in (("tenantId", tenant), ("clientId", client_id), ("clientSecret", secret)) if not v]
            raise ConnectionSettingError(prefix + missing[0], "is needed with the other client-secret settings")
        credential = "clientsecret"
    return StorageConnection(name, queue_url=queue_url, table_url=table_url, credential=credential,
                             client_id=client_id, resource_id=resource_id, tenant_id=tenant, client_secret=secret)
