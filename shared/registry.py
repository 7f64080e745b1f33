"""Registry reads and writes through ``MlflowClient`` (versions, tags, aliases).

Works the same against a workspace registry, Unity Catalog (``databricks-uc``) and an MLflow
server. ``ModelVersion.status`` is ``READY``, ``PENDING_REGISTRATION`` or
``FAILED_REGISTRATION`` (MLflow ``ModelVersionStatus``).
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


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE")


def get_version(client: Any, model: str, version: str) -> VersionInfo:
    from mlflow.exceptions import MlflowException

    try:
        return _info(client.get_model_version(model, version))
    except MlflowException as exc:
        if _not_found(exc):
            raise VersionNotFound(f"{model} version {version} does not exist") from exc
        raise


def resolve(client: Any, model: str, version: str | None = None, alias: str | None = None) -> VersionInfo:
    """An explicit version, the version an alias points to, or the newest version."""
    from mlflow.exceptions import MlflowException

    if version:
        return get_version(client, model, version)
    if alias:
        try:
            return _info(client.get_model_version_by_alias(model, alias))
        except MlflowException as exc:
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
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in (client.get_registered_model(model).aliases or {}).items()}
    except MlflowException as exc:
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
