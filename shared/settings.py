"""App settings, read from the environment as Azure Functions provides them.

Settings are read when a handler runs; shared.startup checks them once when the app starts,
so a bad one stops the app with one clear error naming it instead of failing message by
message (an exception at import stops indexing: Microsoft Learn, "Troubleshoot Python errors in
Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/recover-python-functions).

Storage: ``REACTOR_STORAGE`` (shared.storage). Unset, it is ``azure`` when the app runs in Azure
and an SQLite file in the user's state folder otherwise, never inside the app folder (read-only
when the app runs from a package). In Azure, SQLite is refused: each instance would keep its
own state and the queue triggers listen on Azure Storage, so accepted work would be lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.signatures import SecretState, secret_state

APP_ROOT = Path(__file__).resolve().parent.parent


class SettingError(ValueError):
    """An app setting that is missing or malformed; ``setting`` names it."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"app setting {setting}: {problem}")
        self.setting = setting


def in_azure(env: Mapping[str, str]) -> bool:
    """Running on a Function App: App Service sets WEBSITE_INSTANCE_ID; the Functions host sets
    FUNCTIONS_WORKER_RUNTIME, which with a storage connection means a real host, not our tests."""
    if env.get("WEBSITE_INSTANCE_ID"):
        return True
    return bool(env.get("FUNCTIONS_WORKER_RUNTIME")) and any(
        k == "AzureWebJobsStorage" or k.startswith("AzureWebJobsStorage__") for k, v in env.items() if v)


def default_sqlite_path(env: Mapping[str, str]) -> Path:
    """``$REACTOR_DATA_DIR/reactor.db``, else under ``$XDG_STATE_HOME`` (``~/.local/state``)."""
    if env.get("REACTOR_DATA_DIR"):
        return Path(env["REACTOR_DATA_DIR"]) / "reactor.db"
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    state = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
    return state / "modelops-reactor" / "reactor.db"


def _storage(env: Mapping[str, str]) -> str:
    url = env.get("REACTOR_STORAGE", "").strip()
    azure = in_azure(env)
    if not url:
        return "azure" if azure else f"sqlite:///{default_sqlite_path(env)}"
    if azure and url.startswith("sqlite:"):
        raise SettingError("REACTOR_STORAGE", "SQLite cannot work on a Function App (each instance would keep its "
                                              "own state, and the triggers listen on Azure Storage): set it to azure "
                                              "or remove it")
    return url


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingError(name, f"{raw!r} is not a number") from exc


@dataclass(frozen=True)
class Settings:
    storage: str
    policy_file: Path
    mlflow_webhook_secret: str
    databricks_webhook_secret: str
    webhook_max_body_bytes: int
    webhook_tolerance_seconds: float
    backoff_base_seconds: float
    backoff_cap_seconds: float
    wait_timeout_seconds: float
    registry_uri: str | None
    warehouse_id: str
    feature_step_budget_seconds: float
    claim_seconds: float
    repair_grace_seconds: float
    record_retention_days: float
    rollout_retention_days: float
    # The environment these were read from: the settings the policy names by their own name (an
    # online store's connection URL) and the checks of shared.app_state read it here, so nothing
    # else reads os.environ. Never printed (repr) and never compared.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def webhook_secret_states(self) -> dict[str, SecretState]:
        """Per registry, whether its webhook secret is set, missing or an unresolved reference."""
        return {"mlflow": secret_state(self.mlflow_webhook_secret),
                "databricks": secret_state(self.databricks_webhook_secret)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        policy = Path(env.get("REACTOR_POLICY_FILE") or APP_ROOT / "policy.yaml")
        if not policy.is_absolute():
            policy = APP_ROOT / policy
        return cls(
            storage=_storage(env),
            policy_file=policy,
            mlflow_webhook_secret=env.get("MLFLOW_WEBHOOK_SECRET", ""),
            databricks_webhook_secret=env.get("DATABRICKS_WEBHOOK_SECRET", ""),
            webhook_max_body_bytes=int(_float(env, "WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)),
            webhook_tolerance_seconds=_float(env, "WEBHOOK_TOLERANCE_SECONDS", 300),
            backoff_base_seconds=_float(env, "ROLLOUT_BACKOFF_BASE_SECONDS", 2),
            backoff_cap_seconds=_float(env, "ROLLOUT_BACKOFF_CAP_SECONDS", 60),
            wait_timeout_seconds=_float(env, "ROLLOUT_WAIT_TIMEOUT_SECONDS", 1800),
            registry_uri=env.get("MLFLOW_REGISTRY_URI") or env.get("MLFLOW_TRACKING_URI") or None,
            warehouse_id=env.get("DATABRICKS_WAREHOUSE_ID", ""),
            feature_step_budget_seconds=_float(env, "FEATURE_STEP_BUDGET_SECONDS", 20),
            claim_seconds=_float(env, "COMMAND_CLAIM_SECONDS", 45),
            repair_grace_seconds=_float(env, "REPAIR_GRACE_SECONDS", 30),
            record_retention_days=_float(env, "RECORD_RETENTION_DAYS", 30),
            rollout_retention_days=_float(env, "ROLLOUT_RETENTION_DAYS", 90),
            env=env,
        )
