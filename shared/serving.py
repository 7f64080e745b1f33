"""Model Serving endpoints through ``databricks-sdk`` (Databricks REST API, "Serving endpoints",
https://docs.databricks.com/api/workspace/servingendpoints; the SDK's ``databricks/sdk/service/serving.py``, https://github.com/databricks/databricks-sdk-py).

We never use the SDK's waiters: they block, and ``wait_get_serving_endpoint_not_updating``
ignores ``ready`` (it polls ``state.config_update`` only). A rollout step reads the endpoint once and decides.
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
    return entities, tuple(sorted(routes(config).items()))


def entity_name(model: str, version: str) -> str:
    """Served-entity names allow no dots, so a Unity Catalog name keeps its last part."""
    return f"{model.rsplit('.', 1)[-1]}-{version}"


def entity(model: str, version: str, spec: ServedEntity) -> dict[str, Any]:
    """A ``ServedEntityInput``, named explicitly: the default name would carry a UC name's dots."""
    out: dict[str, Any] = {
        "name": entity_name(model, version),
        "entity_name": model,
        "entity_version": version,
        "workload_size": spec.workload_size,
        "workload_type": spec.workload_type,
        "scale_to_zero_enabled": spec.scale_to_zero,
    }
    if spec.environment_vars:
        out["environment_vars"] = dict(spec.environment_vars)
    return out


def config(entities: list[dict[str, Any]], weights: dict[str, int]) -> dict[str, Any]:
    """A whole endpoint config: ``update_config`` replaces the served-entity list, so every change
    sends every entity, each with a route (0% keeps it loaded but out of the split)."""
    listed = [{"served_entity_name": e["name"], "traffic_percentage": weights.get(e["name"], 0)} for e in entities]
    return {"served_entities": entities, "traffic_config": {"routes": listed}}


def single_version_config(model: str, version: str, spec: ServedEntity) -> dict[str, Any]:
    e = entity(model, version, spec)
    return config([e], {e["name"]: 100})


def routes(cfg: dict[str, Any] | None) -> dict[str, int]:
    """Served-entity name → traffic percentage (a lone entity without traffic_config takes 100)."""
    if not cfg:
        return {}
    listed = (cfg.get("traffic_config") or {}).get("routes") or []
    if not listed and len(cfg["served_entities"]) == 1:
        return {cfg["served_entities"][0]["name"]: 100}
    return {str(r.get("served_entity_name") or r.get("served_model_name")): int(r["traffic_percentage"])
            for r in listed}


def split(base: dict[str, Any], candidate: dict[str, Any], weight: int) -> dict[str, Any]:
    """``base``'s entities with their routes scaled to ``100 - weight`` and the candidate at
    ``weight`` (the percentages stay integers summing to 100: the remainder goes to the
    entity with the largest share)."""
    entities = [e for e in base["served_entities"] if e["name"] != candidate["name"]]
    old = {n: p for n, p in routes(base).items() if n != candidate["name"]}
    total = sum(old.values())
    scaled = {n: (p * (100 - weight)) // total for n, p in old.items()} if total else {}
    if scaled:
        top = max(old, key=lambda n: old[n])
        scaled[top] += 100 - weight - sum(scaled.values())
    return config([*entities, candidate], {**scaled, candidate["name"]: weight})


def without(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``cfg`` with the entity ``name`` removed (it must have no traffic)."""
    kept = [e for e in cfg["served_entities"] if e["name"] != name]
    return config(kept, {n: p for n, p in routes(cfg).items() if n != name})


def only(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``cfg`` reduced to the entity ``name``, at 100%."""
    return config([e for e in cfg["served_entities"] if e["name"] == name], {name: 100})


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
    """Start creating or updating the endpoint; returns without waiting."""
    from databricks.sdk.service.serving import EndpointCoreConfigInput

    cfg = EndpointCoreConfigInput.from_dict({"name": endpoint, **config})
    if exists:
        with telemetry.span(_SPAN + "update_config", endpoint=endpoint, versions=served_versions(config)):
            w.serving_endpoints.update_config(endpoint, served_entities=cfg.served_entities,
                                              traffic_config=cfg.traffic_config)
    else:
        with telemetry.span(_SPAN + "create", endpoint=endpoint, versions=served_versions(config)):
            w.serving_endpoints.create(endpoint, config=cfg)


_GATEWAY_PARTS = ("fallback_config", "guardrails", "inference_table_config", "rate_limits", "usage_tracking_config")


def _put_gateway(w: Any, endpoint: str, gateway: Any, **changes: Any) -> None:
    """``put_ai_gateway`` replaces the whole gateway config (Databricks REST API, "Update AI Gateway of a
    serving endpoint", https://docs.databricks.com/api/workspace/servingendpoints/putaigateway), so
    the parts not changed are sent back as they are."""
    parts = {k: getattr(gateway, k) for k in _GATEWAY_PARTS} if gateway else {}
    with telemetry.span(_SPAN + "put_ai_gateway", endpoint=endpoint, parts=sorted(changes)):
        w.serving_endpoints.put_ai_gateway(endpoint, **{**parts, **changes})


def ensure_capture(w: Any, endpoint: str, catalog: str, schema: str, prefix: str) -> bool:
    """The endpoint's AI Gateway inference table on, at ``<catalog>.<schema>.<prefix>_payload``
    (catalog, schema or prefix change only while the table is disabled, so a table elsewhere is
    disabled first). True if it changed anything."""
    from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

    gateway = w.serving_endpoints.get(endpoint).ai_gateway
    current = gateway.inference_table_config if gateway else None
    want = AiGatewayInferenceTableConfig(catalog_name=catalog, schema_name=schema, table_name_prefix=prefix,
                                         enabled=True)
    if current is not None and current.as_dict() == want.as_dict():
        return False
    if current is not None and current.enabled:
        off = AiGatewayInferenceTableConfig.from_dict({**current.as_dict(), "enabled": False})
        _put_gateway(w, endpoint, gateway, inference_table_config=off)
    _put_gateway(w, endpoint, gateway, inference_table_config=want)
    return True


def fallback_on(w: Any, endpoint: str) -> bool:
    gateway = w.serving_endpoints.get(endpoint).ai_gateway
    return bool(gateway and gateway.fallback_config and gateway.fallback_config.enabled)


def set_fallback(w: Any, endpoint: str, enabled: bool) -> None:
    """Turn AI Gateway fallback routing on or off. A candidate's failed requests would be retried
    on the other entities (Terraform provider for Databricks, "databricks_model_serving", ``fallback_config``,
    https://registry.terraform.io/providers/databricks/databricks/latest/docs/resources/model_serving)
    and its errors hidden from
    the analysis, so it is off while a candidate takes traffic."""
    from databricks.sdk.service.serving import FallbackConfig

    gateway = w.serving_endpoints.get(endpoint).ai_gateway
    if bool(gateway and gateway.fallback_config and gateway.fallback_config.enabled) != enabled:
        _put_gateway(w, endpoint, gateway, fallback_config=FallbackConfig(enabled=enabled))


def delete(w: Any, endpoint: str) -> None:
    """DELETE /serving-endpoints/{name}; an endpoint already gone is not an error."""
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


def query(w: Any, endpoint: str, records: list[dict[str, Any]], served: str | None = None) -> QueryResult:
    """POST /serving-endpoints/{name}/invocations with ``dataframe_records`` (MLflow's
    scoring protocol); with
    ``served``, /serving-endpoints/{name}/served-models/{served}/invocations: that entity answers
    whatever its route, as Databricks documents for querying "individual models behind an
    endpoint" (the path as Databricks' own ``databricks-agents`` builds it). The SDK has no method
    for it, so it goes through the SDK's ``api_client`` with the headers ``query`` sends."""
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.serving import QueryEndpointResponse

    started = time.perf_counter()
    try:
        with telemetry.span(_SPAN + "query", endpoint=endpoint, records=len(records), served=served):
            if served is None:
                resp = w.serving_endpoints.query(endpoint, dataframe_records=records)
            else:
                resp = QueryEndpointResponse.from_dict(w.api_client.do(
                    "POST", f"/serving-endpoints/{endpoint}/served-models/{served}/invocations",
                    body={"dataframe_records": records}, response_headers=["served-model-name"],
                    headers={"Accept": "application/json", "Content-Type": "application/json"}))
    except DatabricksError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        text = str(exc)
        return QueryResult(False, elapsed, error=f"{type(exc).__name__}: {text[:300]}{'…' if len(text) > 300 else ''}")
    elapsed = (time.perf_counter() - started) * 1000
    return QueryResult(True, elapsed, predictions=resp.predictions, served_by=resp.served_model_name)
