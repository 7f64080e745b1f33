"""Registry reads and writes: versions, tags, aliases.

The functions take a client with ``MlflowClient``'s registry methods (``get_model_version``,
``get_model_version_by_alias``, ``search_model_versions``, ``get_registered_model``,
``set_registered_model_alias``): ``MlflowClient`` for an MLflow server, MLflow's REST store
for the workspace registry, and ``UnityCatalogRegistry`` for Unity Catalog (which finds the
newest version itself, ``newest_version``, having no ordered search)
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
    found = newest_version(client, model)
    if found is None:
        raise VersionNotFound(f"{model} has no versions")
    return found


def newest_version(client: Any, model: str, known: str | None = None) -> VersionInfo | None:
    """The newest version of ``model`` (None if it has none), reading no more than the registry
    makes necessary; ``known`` is the highest version number a previous read saw.

    MLflow's registry (an MLflow server, and the workspace registry, which serves MLflow's API)
    orders and limits a search: one version, ``order_by version_number DESC``, ``max_results 1``
    ("Search Model Versions", https://docs.databricks.com/api/model-registry/v1/search-model-versions.md:
    ordered by "model name, version, stage"; ``version_number`` is MLflow's key for the version,
    ``mlflow.utils.search_utils`` [INF: that the workspace registry takes the same key]). Unity
    Catalog neither orders nor filters its listing, so ``UnityCatalogRegistry.newest_version``
    reads forward from ``known``."""
    if isinstance(client, UnityCatalogRegistry):
        return client.newest_version(model, known)
    found = client.search_model_versions(f"name='{model}'", max_results=1, order_by=["version_number DESC"])
    return _info(found[0]) if found else None


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
    """``MlflowClient``'s registry methods answered by Unity Catalog through a ``WorkspaceClient``,
    so they authenticate, retry and fail as every other Databricks call does. Model names are
    three-level (``catalog.schema.model``).

    A version, with its ``tags``, is read where the platform serves them: the MLflow API for
    Unity Catalog models that MLflow's own UC store calls (``GET
    /api/2.0/mlflow/unity-catalog/model-versions/get`` and ``.../registered-models/alias``,
    ``mlflow.protos.databricks_uc_registry_service_pb2``), through ``w.api_client.do``, the
    same client and identity. Unity Catalog's ``/api/2.1/unity-catalog/models`` API has no version
    tags (``ModelVersionInfo`` has no such field; listed versions "will not contain any aliases
    or tags", SDK docstring of ``w.model_versions.list``). Aliases go through
    ``w.registered_models``.
    """

    _MODELS = "/api/2.1/unity-catalog/models"
    _MLFLOW_UC = "/api/2.0/mlflow/unity-catalog"

    def __init__(self, w: Any) -> None:
        self._w = w

    def get_model_version(self, name: str, version: str) -> _UcVersion:
        answer = self._get(f"{self._MLFLOW_UC}/model-versions/get", name=name, version=str(int(version)))
        return self._version(answer["model_version"])

    def get_model_version_by_alias(self, name: str, alias: str) -> _UcVersion:
        answer = self._get(f"{self._MLFLOW_UC}/registered-models/alias", name=name, alias=alias)
        return self._version(answer["model_version"])

    def newest_version(self, name: str, known: str | None) -> VersionInfo | None:
        """The newest version, read forward from ``known``, the highest version number a previous
        read saw (version numbers only grow: a deleted number is not given again): ``known + 1``,
        ``known + 2``... while they exist, else ``known`` itself, so a read with nothing new costs
        two version reads whatever the model's history. Unity Catalog's listing has no order and
        no filter ("There is no guarantee of a specific ordering", SDK docstring of
        ``w.model_versions.list``), so it is read, every page, only with no ``known`` or when
        ``known`` is gone and nothing follows it. A number registered and deleted between two
        reads hides the numbers after it from this read (``docs/reliability.md``)."""
        current = None
        if known and known.isdigit():
            number = int(known)
            while (following := self._existing(name, str(number + 1))) is not None:
                current, number = following, number + 1
            current = current or self._existing(name, known)
        if current is None:
            numbers = [int(mv["version"]) for mv in self._listing(name)]
            current = self._existing(name, str(max(numbers))) if numbers else None
        return _info(current) if current else None

    def get_registered_model(self, name: str) -> _UcModel:
        info = self._w.registered_models.get(name, include_aliases=True)
        return _UcModel({a.alias_name: str(a.version_num) for a in info.aliases or () if a.alias_name})

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._w.registered_models.set_alias(name, alias, int(version))

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._w.registered_models.delete_alias(name, alias)

    def _existing(self, name: str, version: str) -> _UcVersion | None:
        try:
            return self.get_model_version(name, version)
        except _client_errors() as exc:
            if _not_found(exc):
                return None
            raise

    def _listing(self, name: str) -> list[dict[str, Any]]:
        """Every version of the model on Unity Catalog's API, following ``next_page_token`` to
        the end (a page may be empty and still have a token, SDK docstring)."""
        found: list[dict[str, Any]] = []
        query: dict[str, str] = {}
        while True:
            page = self._get(f"{self._MODELS}/{name}/versions", **query)
            found.extend(page.get("model_versions") or ())
            if not page.get("next_page_token"):
                return found
            query["page_token"] = page["next_page_token"]

    def _get(self, path: str, **query: str) -> dict[str, Any]:
        return self._w.api_client.do("GET", path, query=query or None, headers={"Accept": "application/json"})

    @staticmethod
    def _version(mv: dict[str, Any]) -> _UcVersion:
        """MLflow's UC ``ModelVersion`` message (``databricks_uc_registry_messages.proto``)."""
        return _UcVersion(
            name=mv["name"],
            version=str(mv["version"]),
            status=str(mv.get("status") or "MODEL_VERSION_STATUS_UNKNOWN"),
            status_message=mv.get("status_message") or "",
            tags={t["key"]: t.get("value", "") for t in mv.get("tags") or () if "key" in t},
            aliases=tuple(a["alias"] for a in mv.get("aliases") or () if a.get("alias")),
        )
