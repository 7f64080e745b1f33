"""Model Serving endpoints through ``databricks-sdk`` (reference databricks-api.md §1).

We never use the SDK's waiters: they block, and ``wait_get_serving_endpoint_not_updating``
ignores ``ready`` (§0.4, Appendix A.5). A rollout step reads the endpoint once and decides.
Each SDK call is a span (shared.telemetry) named for the SDK method, with the endpoint; the
HTTP calls under it get theirs from the distro's ``requests`` instrumentation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from shared import telemetry
from shared.policy import ServedEntity

_SPAN = "databricks.serving_endpoints."


@dataclass(frozen=True)
class EndpointView:
    """What one GET of an endpoint says, reduced to what a rollout decides on."""

    exists: bool
    config_update: str | None = None  # NOT_UPDATING | IN_PROGRESS | UPDATE_FAILED | UPDATE_CANCELED
    ready: str | None = None  # READY | NOT_READY
    active: dict[str, Any] | None = None  # EndpointCoreConfigInput fields of the config that serves now
    message: str = ""

    @property
    def updating(self) -> bool:
        return self.config_update == "IN_PROGRESS"

    def serves(self, config: dict[str, Any] | None) -> bool:
        """True when the active config routes traffic exactly as ``config`` does."""
        return config is not None and self.active is not None and signature(self.active) == signature(config)


def signature(config: dict[str, Any]) -> tuple[Any, ...]:
    entities = tuple(sorted((e.get("entity_name"), str(e.get("entity_version"))) for e in config["served_entities"]))
    routes = (config.get("traffic_config") or {}).get("routes") or []
    traffic = tuple(sorted((r.get("served_entity_name") or r.get("served_model_name"), r["traffic_percentage"])
                           for r in routes))
    return entities, traffic


def entity_name(model: str, version: str) -> str:
    """Served-entity names allow no dots, so a Unity Catalog name keeps its last part (§1.3)."""
    return f"{model.rsplit('.', 1)[-1]}-{version}"


def single_version_config(model: str, version: str, spec: ServedEntity) -> dict[str, Any]:
    name = entity_name(model, version)
    entity: dict[str, Any] = {
        "name": name,
        "entity_name": model,
        "entity_version": version,
        "workload_size": spec.workload_size,
        "workload_type": spec.workload_type,
        "scale_to_zero_enabled": spec.scale_to_zero,
    }
    if spec.environment_vars:
        entity["environment_vars"] = dict(spec.environment_vars)
    return {
        "served_entities": [entity],
        "traffic_config": {"routes": [{"served_entity_name": name, "traffic_percentage": 100}]},
    }


def served_versions(config: dict[str, Any] | None) -> list[str]:
    return [str(e.get("entity_version")) for e in (config or {}).get("served_entities", [])]


def read(w: Any, endpoint: str) -> EndpointView:
    from databricks.sdk.errors import NotFound
    from databricks.sdk.service.serving import ServedEntityInput

    with telemetry.span(_SPAN + "get", endpoint=endpoint) as span:
        try:
            ep = w.serving_endpoints.get(endpoint)
        except NotFound:  # an answer, not a failure: the endpoint does not exist
            span.set(exists=False)
            return EndpointView(exists=False)
    state = ep.state
    active = None
    if ep.config and ep.config.served_entities:
        active = {
            # Output entities carry state and timestamps; keep what an update accepts as input.
            "served_entities": [ServedEntityInput.from_dict(e.as_dict()).as_dict() for e in ep.config.served_entities],
            "traffic_config": ep.config.traffic_config.as_dict() if ep.config.traffic_config else None,
        }
    messages = []
    for cfg in (ep.pending_config, ep.config):
        for e in (cfg.served_entities or []) if cfg else []:
            if e.state and e.state.deployment_state_message:
                messages.append(f"{e.name}: {e.state.deployment_state_message}")
    return EndpointView(
        exists=True,
        config_update=state.config_update.value if state and state.config_update else None,
        ready=state.ready.value if state and state.ready else None,
        active=active,
        message="; ".join(messages),
    )


def write(w: Any, endpoint: str, config: dict[str, Any], exists: bool) -> None:
    """Start creating or updating the endpoint; returns without waiting (§1.1)."""
    from databricks.sdk.service.serving import EndpointCoreConfigInput

    cfg = EndpointCoreConfigInput.from_dict({"name": endpoint, **config})
    if exists:
        with telemetry.span(_SPAN + "update_config", endpoint=endpoint, versions=served_versions(config)):
            w.serving_endpoints.update_config(endpoint, served_entities=cfg.served_entities,
                                              traffic_config=cfg.traffic_config)
    else:
        with telemetry.span(_SPAN + "create", endpoint=endpoint, versions=served_versions(config)):
            w.serving_endpoints.create(endpoint, config=cfg)


def ensure_capture(w: Any, endpoint: str, catalog: str, schema: str, prefix: str) -> bool:
    """The endpoint's AI Gateway inference table on, at ``<catalog>.<schema>.<prefix>_payload``
    (reference databricks-api.md §1.7: ``put_ai_gateway`` replaces the whole gateway config, so
    its other parts are passed back unchanged; catalog, schema or prefix change only while the
    table is disabled, so a table elsewhere is disabled first). True if it changed anything."""
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

    gateway = w.serving_endpoints.get(endpoint).ai_gateway
    current = gateway.inference_table_config if gateway else None
    want = AiGatewayInferenceTableConfig(catalog_name=catalog, schema_name=schema, table_name_prefix=prefix,
                                         enabled=True)
    if current is not None and current.as_dict() == want.as_dict():
        return False
    keep = {k: getattr(gateway, k) for k in ("fallback_config", "guardrails", "rate_limits", "usage_tracking_config")
            } if gateway else {}
    with telemetry.span(_SPAN + "put_ai_gateway", endpoint=endpoint):
        if current is not None and current.enabled:
            off = AiGatewayInferenceTableConfig.from_dict({**current.as_dict(), "enabled": False})
            w.serving_endpoints.put_ai_gateway(endpoint, inference_table_config=off, **keep)
        w.serving_endpoints.put_ai_gateway(endpoint, inference_table_config=want, **keep)
    return True


def delete(w: Any, endpoint: str) -> None:
    """DELETE /serving-endpoints/{name} (§1.1); an endpoint already gone is not an error."""
    from databricks.sdk.errors import NotFound

    with telemetry.span(_SPAN + "delete", endpoint=endpoint) as span:
        try:
            w.serving_endpoints.delete(endpoint)
        except NotFound:
            span.set(exists=False)


@dataclass(frozen=True)
class QueryResult:
    ok: bool
    latency_ms: float
    predictions: Any = None
    served_by: str | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def query(w: Any, endpoint: str, records: list[dict[str, Any]]) -> QueryResult:
    """POST /serving-endpoints/{name}/invocations with ``dataframe_records`` (§1.5)."""
    from databricks.sdk.errors import DatabricksError

    started = time.perf_counter()
    try:
        with telemetry.span(_SPAN + "query", endpoint=endpoint, records=len(records)):
            resp = w.serving_endpoints.query(endpoint, dataframe_records=records)
    except DatabricksError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        text = str(exc)
        return QueryResult(False, elapsed, error=f"{type(exc).__name__}: {text[:300]}{'…' if len(text) > 300 else ''}")
    elapsed = (time.perf_counter() - started) * 1000
    return QueryResult(True, elapsed, predictions=resp.predictions, served_by=resp.served_model_name)
