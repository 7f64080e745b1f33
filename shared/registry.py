"""Registry reads and writes: versions, tags, aliases.

The functions take a client with ``MlflowClient``'s registry methods (``get_model_version``,
``get_model_version_by_alias``, ``search_model_versions``, ``get_registered_model``,
``set_registered_model_alias``): ``MlflowClient`` for an MLflow server, MLflow's REST store
for the workspace registry, and ``UnityCatalogRegistry`` for Unity Catalog
(``shared.workspace.registry_client`` picks one and says why). ``ModelVersion.status`` is
``READY``, ``PENDING_REGISTRATION`` or ``FAILED_REGISTRATION`` (MLflow ``ModelVersionStatus``;
Unity Catalog's ``ModelVersionInfo.status`` uses the same names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class VersionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: str
    status: str
    status_message: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()


def _info(mv: Any) -> VersionInfo:
    return VersionInfo(
        model=mv.name,
        version=str(mv.version),
        status=str(mv.status),
        status_message=mv.status_message or "",
        tags=dict(mv.tags or {}),
        aliases=tuple(mv.aliases or ()),
    )


def _client_errors() -> tuple[type[Exception], ...]:
    """What the clients raise for an answer of the registry: MLflow's and databricks-sdk's."""
    from databricks.sdk.errors import DatabricksError
    from mlflow.exceptions import MlflowException

    return MlflowException, DatabricksError


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def get_version(client: Any, model: str, version: str) -> VersionInfo:
    try:
        return _info(client.get_model_version(model, version))
    except _client_errors() as exc:
        if _not_found(exc):
            raise VersionNotFound(f"{model} version {version} does not exist") from exc
        raise


def resolve(client: Any, model: str, version: str | None = None, alias: str | None = None) -> VersionInfo:
    """An explicit version, the version an alias points to, or the newest version."""
    if version:
        return get_version(client, model, version)
    if alias:
        try:
            return _info(client.get_model_version_by_alias(model, alias))
        except _client_errors() as exc:
            if _not_found(exc):
                raise VersionNotFound(f"{model} has no alias @{alias}") from exc
            raise
    versions = latest_versions(client, model)
    if not versions:
        raise VersionNotFound(f"{model} has no versions")
    return versions[-1]


def latest_versions(client: Any, model: str) -> list[VersionInfo]:
    """Every version of ``model``, oldest first (by version number)."""
    found = client.search_model_versions(f"name='{model}'")
    return sorted((_info(mv) for mv in found), key=lambda v: int(v.version))


def aliases(client: Any, model: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in (client.get_registered_model(model).aliases or {}).items()}
    except _client_errors() as exc:
        if _not_found(exc):
            return {}
        raise


def set_aliases(client: Any, model: str, version: str, names: list[str]) -> list[str]:
    """Point each alias at ``version``; returns those that moved (setting is idempotent)."""
    current = aliases(client, model)
    moved = [a for a in names if current.get(a) != version]
    for alias in moved:
        client.set_registered_model_alias(model, alias, version)
    return moved


def delete_alias(client: Any, model: str, alias: str) -> None:
    """Remove ``alias`` from the model; an alias already gone is not an error."""
    try:
        client.delete_registered_model_alias(model, alias)
    except _client_errors() as exc:
        if not _not_found(exc):
            raise


@dataclass(frozen=True)
class _UcVersion:
    name: str
    version: str
    status: str
    status_message: str
    tags: dict[str, str]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class _UcModel:
    aliases: dict[str, str]


class UnityCatalogRegistry:
    """``MlflowClient``'s registry methods answered by Unity Catalog's model API (reference
    databricks-api.md §6.1) through a ``WorkspaceClient``, so they authenticate, retry and fail
    as every other Databricks call does.

    Versions are read with ``w.api_client.do`` on the paths ``w.model_versions`` uses, because
    the SDK's ``ModelVersionInfo`` drops the version's ``tags`` (``[{key, value}]``, as MLflow's
    native UC store reads them), which ``required_tags`` needs. Aliases go through
    ``w.registered_models``. Model names are three-level (``catalog.schema.model``).
    """

    _MODELS = "/api/2.1/unity-catalog/models"

    def __init__(self, w: Any) -> None:
        self._w = w

    def get_model_version(self, name: str, version: str) -> _UcVersion:
        return self._version(self._get(f"{self._MODELS}/{name}/versions/{int(version)}", include_aliases="true"))

    def get_model_version_by_alias(self, name: str, alias: str) -> _UcVersion:
        return self._version(self._get(f"{self._MODELS}/{name}/aliases/{alias}", include_aliases="true"))

    def search_model_versions(self, filter_string: str) -> list[_UcVersion]:
        """Every version of the model named in ``filter_string`` (``name='...'``, the one filter
        this module sends), following ``next_page_token`` to the end (the listing may page)."""
        name = filter_string.partition("=")[2].strip().strip("'")
        found: list[_UcVersion] = []
        query: dict[str, str] = {}
        while True:
            page = self._get(f"{self._MODELS}/{name}/versions", **query)
            found.extend(self._version(mv) for mv in page.get("model_versions") or ())
            if not page.get("next_page_token"):
                return found
            query["page_token"] = page["next_page_token"]

    def get_registered_model(self, name: str) -> _UcModel:
        info = self._w.registered_models.get(name, include_aliases=True)
        return _UcModel({a.alias_name: str(a.version_num) for a in info.aliases or () if a.alias_name})

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._w.registered_models.set_alias(name, alias, int(version))

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._w.registered_models.delete_alias(name, alias)

    def _get(self, path: str, **query: str) -> dict[str, Any]:
        return self._w.api_client.do("GET", path, query=query or None, headers={"Accept": "application/json"})

    @staticmethod
    def _version(mv: dict[str, Any]) -> _UcVersion:
        name = ".".join(mv[k] for k in ("catalog_name", "schema_name", "model_name"))
        return _UcVersion(
            name=name,
            version=str(mv["version"]),
            status=str(mv.get("status") or "MODEL_VERSION_STATUS_UNKNOWN"),
            status_message="",  # Unity Catalog's ModelVersionInfo has no status message
            tags={t["key"]: t.get("value", "") for t in mv.get("tags") or () if "key" in t},
            aliases=tuple(a["alias_name"] for a in mv.get("aliases") or () if a.get("alias_name")),
        )
