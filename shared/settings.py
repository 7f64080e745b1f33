"""App settings, read from the environment as Azure Functions provides them.

Settings are read when a handler runs, never at import: an exception at import time would
stop the host from indexing every function (reference azure-functions.md §7.1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parent.parent


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"app setting {name}={raw!r} is not a number") from exc


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        policy = Path(env.get("REACTOR_POLICY_FILE") or APP_ROOT / "policy.yaml")
        if not policy.is_absolute():
            policy = APP_ROOT / policy
        return cls(
            storage=env.get("REACTOR_STORAGE") or f"sqlite:///{APP_ROOT / '.local' / 'reactor.db'}",
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
        )
