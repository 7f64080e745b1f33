"""The model policy file: what should serve, where, and how a rollout proves it works.

A YAML file validated with pydantic. Unknown keys are errors, so a typo never silently
falls back to a default. ``python -m shared.policy schema`` prints the JSON Schema that
editors use (committed as ``policy.schema.json``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.delivery.policy import ALIAS_NAME, Aliases, Strategy
from shared.monitoring.policy import InferenceTable, Monitoring
from shared.policy_problems import Problem, compose, problems
from shared.redaction import SECRET_REFERENCE, contains_secret

# Names as Databricks allows them: endpoints and served entities use alphanumerics, '-' and '_'
# (the SDK's ``ServedEntityInput.name`` docstring, ``databricks/sdk/service/serving.py``,
# https://github.com/databricks/databricks-sdk-py).
_ENDPOINT_NAME = r"^[A-Za-z0-9_-]{1,63}$"


class PolicyError(ValueError):
    """The policy file is missing, unreadable or invalid. The message names file and key;
    ``problems`` holds each problem with its key path, line and column (shared.policy_problems)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Environment variable names are free-form, so any of these words anywhere marks a secret:
# a false alarm costs a secret reference, a miss leaks a credential.
_SECRET_ENV_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PWD")


def _secret_env_name(name: str) -> bool:
    return any(word in name.upper() for word in _SECRET_ENV_WORDS)


class ServedEntity(_Strict):
    """Settings of the served entity (SDK ``ServedEntityInput``). Sizes as documented: Small 4, Medium 8-16,
    Large 16-64 concurrency; with scale-to-zero the lower bound is 0."""

    workload_size: Literal["Small", "Medium", "Large"] = "Small"
    workload_type: Literal[
        "CPU", "CPU_MEDIUM", "CPU_LARGE", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE", "GPU_XLARGE", "GPU_XLARGE_8",
        "MULTIGPU_MEDIUM",
    ] = "CPU"
    scale_to_zero: bool = True
    environment_vars: dict[str, str] = Field(
        default_factory=dict,
        description="environment of the served entity; a secret (a variable named like PASSWORD, SECRET, TOKEN, "
        "KEY, CREDENTIAL or PWD, or a value holding credentials) must be a Databricks secret reference "
        "'{{secrets/<scope>/<key>}}'",
    )

    @field_validator("environment_vars")
    @classmethod
    def _secrets_by_reference(cls, v: dict[str, str]) -> dict[str, str]:
        """Serving takes secrets as ``{{secrets/<scope>/<key>}}`` references, resolved at serving
        time (SDK ``ServedEntityInput.environment_vars``; Databricks "Configure access to resources
        from model serving endpoints"). A plain secret here would sit in the policy file, the
        endpoint config and every record of it, so it is refused."""
        plain = [name for name, value in v.items()
                 if not SECRET_REFERENCE.match(value.strip()) and (_secret_env_name(name) or contains_secret(value))]
        if plain:
            raise ValueError(
                "; ".join(f"{name} looks like a secret but holds a plain value: store it in a Databricks secret "
                          "scope and use a secret reference '{{secrets/<scope>/<key>}}'" for name in plain)
            )
        return v


class Expect(_Strict):
    """What a smoke query's answer must satisfy, besides a successful (2xx) answer."""

    prediction_type: Literal["number", "string", "any"] = "number"
    count: int | None = Field(None, ge=0, description="number of predictions; default: one per record")
    min: float | None = Field(None, description="every numeric prediction at least this")
    max: float | None = Field(None, description="every numeric prediction at most this")
    max_latency_ms: float = Field(5000, gt=0, description="round-trip bound for the query")


class SmokeQuery(_Strict):
    name: str = Field(min_length=1)
    records: list[dict[str, Any]] = Field(min_length=1, description="input rows, sent as dataframe_records")
    expect: Expect = Field(default_factory=Expect)


class Retraining(_Strict):
    """The Databricks job that retrains this model (``jobs.run_now``)."""

    job_id: int = Field(gt=0)
    parameters: dict[str, str] = Field(default_factory=dict, description="job_parameters for run_now; the app adds "
                                       "the ones the job defines among decision, model, environment, version, "
                                       "since, payload_table, label_table, label_key, label_column")


# Unity Catalog object names (Databricks SQL reference "Names"): at most 255 characters, none of
# '.', ' ', '/', the ASCII control characters 00-1F or DELETE (7F); stored lowercase. Anything
# else (hyphens, quotes, backticks, non-ASCII) is allowed and is quoted wherever it reaches SQL.
_UC_PART = r"[^. /\x00-\x1f\x7f]{1,255}"
_UC_TABLE = rf"^{_UC_PART}\.{_UC_PART}\.{_UC_PART}$"
# Column names "can use special characters" (same page); control characters are refused here, as
# Delta refuses newline and tab in column names, and the length bound is the object names' [INF].
_COLUMN = r"^[^\x00-\x1f\x7f]{1,255}$"
_ONLINE_SUFFIX = "_online"


class FeatureTable(_Strict):
    """A Unity Catalog feature table the model looks features up from."""

    source: str = Field(pattern=_UC_TABLE, description="catalog.schema.table of the Delta table")
    primary_keys: list[Annotated[str, Field(pattern=_COLUMN)]] = Field(min_length=1)
    timeseries_key: str | None = Field(None, pattern=_COLUMN)
    online_table: str | None = Field(
        None, pattern=_UC_TABLE,
        description=f"catalog.schema.table of the online table; default: the source name with '{_ONLINE_SUFFIX}' "
        "appended",
    )

    @model_validator(mode="after")
    def _names(self) -> FeatureTable:
        dup = sorted({k for k in self.primary_keys if self.primary_keys.count(k) > 1})
        if dup:
            raise ValueError(f"primary key column(s) listed more than once: {dup}")
        if self.online_table is None and len(self.source.rsplit(".", 1)[1] + _ONLINE_SUFFIX) > 255:
            raise ValueError(f"the default online table name ({self.source}{_ONLINE_SUFFIX}) would exceed Unity "
                             "Catalog's 255 characters: name online_table")
        return self

    @property
    def online_name(self) -> str:
        return self.online_table or f"{self.source}{_ONLINE_SUFFIX}"


class OnlineFeatureStore(_Strict):
    """A Databricks Online Feature Store (Lakebase), published to with ``feature_store.publish_table``."""

    kind: Literal["online_feature_store"]
    name: str = Field(min_length=1)
    capacity: Literal["CU_1", "CU_2", "CU_4", "CU_8"] = "CU_1"


class SyncedTableStore(_Strict):
    """Lakebase synced tables (``database.create_synced_database_table``) in a database instance."""

    kind: Literal["synced_table"]
    database_instance: str = Field(min_length=1)
    logical_database: str = Field(min_length=1)


class RdbmsStore(_Strict):
    """A third-party online store (MySQL/MariaDB, PostgreSQL) that the app publishes to itself.
    The connection URL comes from the app setting named here (a Key Vault reference in Azure)."""

    kind: Literal["rdbms"]
    connection_setting: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class Features(_Strict):
    store: OnlineFeatureStore | SyncedTableStore | RdbmsStore = Field(discriminator="kind")
    publish_mode: Literal["snapshot", "triggered", "continuous"] = "triggered"
    freshness_seconds: float = Field(
        3600, gt=0, description="an online table is ready when it holds the source's latest version, or was "
        "synced within this many seconds",
    )
    tables: list[FeatureTable] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_table_per_online_table(self) -> Features:
        online = [t.online_name.lower() for t in self.tables]  # Unity Catalog names are case-insensitive
        dup = sorted({n for n in online if online.count(n) > 1})
        if dup:
            raise ValueError(f"online table used by more than one feature table: {dup}")
        return self


class Environment(_Strict):
    endpoint: str = Field(pattern=_ENDPOINT_NAME, description="Model Serving endpoint name")
    track: str = Field(
        "latest",
        description="which version should serve: 'latest' (newest registered version) or '@Alias' "
        "(the version an alias points to)",
    )
    served_entity: ServedEntity = Field(default_factory=ServedEntity)
    aliases: Aliases = Field(default_factory=Aliases, description="the alias lifecycle: challenger when the candidate "
                             "first takes traffic, champion when it passed and takes it all, production when an A/B "
                             "test promotes it; a list names the champion aliases only")
    strategy: Strategy = Field(default_factory=Strategy, description="how the new version takes traffic")
    smoke: list[SmokeQuery] = Field(default_factory=list)
    retraining: Retraining | None = None
    inference_table: InferenceTable | None = Field(
        None, description="the AI Gateway inference table the rollout turns on: every request and prediction is "
        "captured to <catalog>.<schema>.<prefix>_payload")
    monitoring: Monitoring | None = Field(None, description="drift, performance and health checks, and what to do "
                                          "when they fail")
    wait_timeout_seconds: float = Field(1800, gt=0, description="give up waiting for the endpoint after this")

    @field_validator("track")
    @classmethod
    def _track(cls, v: str) -> str:
        if v == "latest" or (v.startswith("@") and re.match(ALIAS_NAME, v[1:])):
            return v
        raise ValueError("must be 'latest' or '@' followed by an alias name, e.g. '@Challenger'")

    @model_validator(mode="after")
    def _analysis_needs(self) -> Environment:
        if any(stage["analysis"] for stage in self.strategy.stages()) and self.inference_table is None:
            raise ValueError(f"strategy {self.strategy.kind}: its analysis reads the endpoint's inference table: set "
                             "inference_table (catalog, schema)")
        return self

    @model_validator(mode="after")
    def _monitoring_needs(self) -> Environment:
        m = self.monitoring
        if m is None:
            return self
        if m.source is None and m.lakehouse_monitor is None and self.inference_table is None:
            raise ValueError("monitoring reads the endpoint's inference table: set inference_table (catalog, schema), "
                             "or monitoring.source / monitoring.lakehouse_monitor")
        if m.decision.action == "retrain" and self.retraining is None:
            raise ValueError("monitoring.decision.action is retrain: set retraining (the job to run)")
        return self

    @property
    def track_alias(self) -> str | None:
        return self.track[1:] if self.track.startswith("@") else None


class ModelPolicy(_Strict):
    name: str = Field(min_length=1, description="registered model name (Unity Catalog: catalog.schema.model)")
    required_tags: list[str] = Field(default_factory=list, description="tags a version must carry to be deployed")
    features: Features | None = Field(None, description="feature tables published online before the model serves")
    environments: dict[str, Environment] = Field(min_length=1)


class Policy(_Strict):
    version: Literal[1] = 1
    models: list[ModelPolicy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Policy:
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model listed more than once: {dup}")
        endpoints = [e.endpoint for m in self.models for e in m.environments.values()]
        dup = sorted({n for n in endpoints if endpoints.count(n) > 1})
        if dup:
            raise ValueError(f"endpoint used by more than one model or environment: {dup}")
        return self

    def model(self, name: str) -> ModelPolicy | None:
        return next((m for m in self.models if m.name == name), None)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        found = Problem("(top level)", mark.line + 1 if mark else None, mark.column + 1 if mark else None,
                        f"not valid YAML: {getattr(exc, 'problem', exc)}")
        raise PolicyError(f"{source}: {where}{found.message}", [found]) from exc
    if not isinstance(data, dict):
        found = Problem("(top level)", 1, 1, "the top level must be a mapping with 'models'")
        raise PolicyError(f"{source}: {found.message}", [found])
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        found = problems(exc, Policy, compose(text))
        raise PolicyError("\n".join(p.text(source) for p in found), found) from exc


def is_workspace_registry(registry_uri: str | None) -> bool:
    """The Databricks workspace model registry: MLflow's ``databricks`` and ``databricks://profile``."""
    return bool(registry_uri) and (registry_uri == "databricks" or registry_uri.startswith("databricks://"))


def check_registry(policy: Policy, registry_uri: str | None, source: str = "<policy>") -> Policy:
    """Refuse what the registry cannot do. The workspace model registry has no aliases: MLflow's
    store for it raises "Method 'set_registered_model_alias' is unsupported for models in the
    Workspace Model Registry" (likewise ``delete_registered_model_alias`` and
    ``get_model_version_by_alias``, ``mlflow.store.model_registry.
    databricks_workspace_model_registry_rest_store``); the registry is legacy and versions move by
    stage ("Manage model lifecycle using the Workspace Model Registry (legacy)",
    https://docs.databricks.com/aws/machine-learning/manage-model-lifecycle/workspace-model-registry). So an
    environment that tracks an alias or names aliases to set is refused for it here, before a
    rollout would half-run and fail at promotion."""
    if not is_workspace_registry(registry_uri):
        return policy
    uses = []
    for m in policy.models:
        for name, env in m.environments.items():
            used = [f"track {env.track}"] if env.track_alias else []
            a = env.aliases
            used += [f"aliases.{role} {v}" for role, v in (("challenger", a.challenger), ("production", a.production))
                     if v] + ([f"aliases.champion {a.champion}"] if a.champion else [])
            if used:
                uses.append(f"models[{m.name}].environments.{name}: {', '.join(used)}")
    if uses:
        raise PolicyError(f"{source}: the workspace model registry (MLFLOW_REGISTRY_URI={registry_uri}) has no "
                          f"aliases; set 'aliases: []' and 'track: latest', or use Unity Catalog (databricks-uc): "
                          + "; ".join(uses))
    return policy


_cache: dict[Path, tuple[float, Policy]] = {}


def load_policy(path: Path, registry_uri: str | None = None) -> Policy:
    """Read and validate the file (cached until its modification time changes), then check it
    against the registry the app uses (``check_registry``)."""
    return check_registry(_load(path), registry_uri, str(path))


def _load(path: Path) -> Policy:
    try:
        mtime = path.stat().st_mtime
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from exc
    policy = parse_policy(text, str(path))
    _cache[path] = (mtime, policy)
    return policy


def json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ModelOps Reactor policy"
    return schema


if __name__ == "__main__":
    if sys.argv[1:] == ["schema"]:
        print(json.dumps(json_schema(), indent=2))
