"""Model Serving endpoints of the local workspace.

Follows the Databricks REST API "Serving endpoints" (https://docs.databricks.com/api/workspace/servingendpoints, as
read in databricks-sdk 0.156.0, ``databricks/sdk/service/serving.py``,
https://github.com/databricks/databricks-sdk-py) and
the Databricks documentation it cites ("Manage model serving endpoints", "Query serving
endpoints for custom models", "AI Gateway inference tables"). Requests are parsed and responses
are written with the SDK's own dataclasses (``EndpointCoreConfigInput.from_dict``,
``ServingEndpointDetailed(...).as_dict()``) so that field names are exactly the SDK's.

State machine: a create or config update puts the new config in
``pending_config`` with ``state.config_update = IN_PROGRESS``; a background thread waits the
injected provisioning delay, loads every served entity's model from the MLflow registry and then
either promotes the pending config to ``config`` (``NOT_UPDATING``, ``READY``) or ends the update
``UPDATE_FAILED``, dropping ``pending_config`` and leaving the previous config serving. Only one
update may be in progress at a time (409 RESOURCE_CONFLICT otherwise).

Locking: every piece of endpoint state is guarded by the workspace lock; it is never held while
a model loads or scores.

Feature lookup (``feature_lookup``; Databricks docs "Automatic feature lookup with MLflow models on
Databricks"): a served model that carries a feature spec gets its features looked up by primary
key before it scores, from the online catalog (``self.online_catalog``) or
from a third-party store whose URL is in the served entity's ``environment_vars``. The inference
table keeps the client's request as it came (IDs only); ``execution_duration_ms`` includes the
lookup, which on Databricks runs inside the served model [INF]; each lookup's time is written to
the served entity's server logs (``logs``).

Inference tables (``inference_table``): an endpoint is captured only while its
AI Gateway ``inference_table_config`` or its active config's legacy ``auto_capture_config`` is
enabled. An enabled config needs ``catalog_name`` and ``schema_name``; the catalog, schema or
prefix of an enabled table cannot change ("disable the table first"); and only one of the
two may be enabled at a time [INF: both tables would have the same name]. Each violation is
400 INVALID_PARAMETER_VALUE [INF: texts].
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from databricks.sdk.service import serving as sdk

from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    does_not_exist,
    invalid_parameter,
    temporarily_unavailable,
)
from .faults import Faults
from .feature_lookup import StorePool, augment, request_frame
from .inference_table import AI_GATEWAY, LEGACY, CaptureTarget, InferenceRecord, InferenceTables, capture_target
from .models import (
    LoadedModel,
    ModelLoadError,
    ModelStore,
    ScoreResult,
    input_fields,
    required_input_message,
    score,
    score_frame,
)
from .online_catalog import OnlineCatalog
from .openapi import build_document
from .web import Request, Response, Router

log = logging.getLogger("local.workspace.serving")

# Endpoint and served-entity names: alphanumerics, dashes and underscores (the SDK's docstrings).
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# At most 10 served entities per endpoint (the SDK's docstring).
MAX_SERVED_ENTITIES = 10
# Registered-model versions are positive integers in both registries [INF: not documented].
_VERSION = re.compile(r"^[1-9][0-9]*$")

READY = "READY"
NOT_READY = "NOT_READY"
IN_PROGRESS = "IN_PROGRESS"
NOT_UPDATING = "NOT_UPDATING"
UPDATE_FAILED = "UPDATE_FAILED"

DEPLOYMENT_CREATING = "DEPLOYMENT_CREATING"
DEPLOYMENT_READY = "DEPLOYMENT_READY"
DEPLOYMENT_FAILED = "DEPLOYMENT_FAILED"
DEPLOYMENT_ABORTED = "DEPLOYMENT_ABORTED"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ServedEntity:
    name: str
    entity_name: str
    entity_version: str
    spec: dict[str, Any]  # the ServedEntityInput wire fields echoed on GET
    creation_timestamp: int
    served_entity_id: str
    legacy: bool = False  # came in as served_models
    deployment: str = DEPLOYMENT_CREATING
    message: str = ""


@dataclass
class EndpointConfig:
    version: int
    entities: list[ServedEntity]
    routes: list[tuple[str, int]]  # (served entity name, traffic percentage)
    auto_capture: sdk.AutoCaptureConfigOutput | None
    start_time: int

    def entity(self, name: str) -> ServedEntity | None:
        return next((e for e in self.entities if e.name == name), None)


@dataclass
class Endpoint:
    name: str
    id: str
    creator: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str = ""
    tags: list[sdk.EndpointTag] = field(default_factory=list)
    ai_gateway: sdk.AiGatewayConfig | None = None
    email_notifications: sdk.EmailNotifications | None = None
    budget_policy_id: str | None = None
    route_optimized: bool = False
    telemetry_config: sdk.TelemetryConfig | None = None
    config: EndpointConfig | None = None
    pending: EndpointConfig | None = None
    ready: str = NOT_READY
    config_update: str = NOT_UPDATING
    last_version: int = 0
    generation: int = 0  # identifies the update whose provisioning thread may settle the endpoint
    build_logs: dict[str, list[str]] = field(default_factory=dict)
    server_logs: dict[str, deque[str]] = field(default_factory=dict)

    def capture_target(self) -> CaptureTarget | None:
        """Where a query answered now is captured: the AI Gateway inference table, else the active
        config's auto capture table, else nowhere."""
        target = _gateway_target(self.ai_gateway, self.name)
        if target is None and self.config is not None and self.ready == READY:
            target = capture_target(LEGACY, self.config.auto_capture, self.name)
        return target


def _gateway_target(gateway: sdk.AiGatewayConfig | None, endpoint: str) -> CaptureTarget | None:
    return capture_target(AI_GATEWAY, gateway.inference_table_config if gateway else None, endpoint)


def _checked_target(kind: str, config: Any, endpoint: str, current: CaptureTarget | None) -> CaptureTarget | None:
    """The target of a new inference table config, refused (400) when it lacks catalog or schema, or
    moves a table that is enabled now (disable it first)."""
    try:
        target = capture_target(kind, config, endpoint)
    except ValueError as exc:
        raise invalid_parameter(f"Invalid inference table config: {exc}.") from exc
    if current is not None and target is not None and current != target:
        raise invalid_parameter(
            f"The inference table {current.table} is enabled: disable it before changing its catalog, schema or "
            "table name prefix.")
    return target


def _refuse_both(gateway: CaptureTarget | None, legacy: CaptureTarget | None) -> None:
    if gateway is not None and legacy is not None:
        raise invalid_parameter(
            "An endpoint cannot have both an AI Gateway inference table and a legacy auto capture inference table "
            "enabled; disable auto_capture_config before enabling ai_gateway.inference_table_config.")


def _slow_down(latency_ms: float) -> int:
    """Sleep an injected latency; returns the milliseconds actually slept (0 when none)."""
    if latency_ms <= 0:
        return 0
    started = time.perf_counter()
    time.sleep(latency_ms / 1000.0)
    return int((time.perf_counter() - started) * 1000)


def _biased(body: str, bias: float) -> str:
    """A scoring answer with ``bias`` added to each numeric prediction; anything else (strings,
    objects, nested lists, a body without a predictions list) is left as it is."""
    answer = json.loads(body)
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(predictions, list):
        return body
    answer["predictions"] = [
        p + bias if isinstance(p, int | float) and not isinstance(p, bool) else p for p in predictions
    ]
    return json.dumps(answer)


def _stamp(line: str) -> str:
    return f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {line}"


class ServingService:
    """Serving endpoints: REST handlers, provisioning threads and the invocation path."""

    def __init__(
        self,
        *,
        lock: threading.RLock,
        faults: Faults,
        models: ModelStore,
        inference: InferenceTables,
        base_url: Any,  # callable returning the workspace URL
        user: str,
        stopping: threading.Event,
        online_catalog: OnlineCatalog,
        seed: int | None = 0,
    ):
        self.lock = lock
        self.faults = faults
        self.models = models
        self.inference = inference
        self._base_url = base_url
        self.user = user
        self._stopping = stopping
        self._endpoints: dict[str, Endpoint] = {}
        self._threads: set[threading.Thread] = set()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.online_catalog = online_catalog  # where published feature tables live online
        self.feature_stores = StorePool()  # pooled online-store connections for feature lookups

    # ------------------------------------------------------------------ routes
    def register(self, router: Router) -> None:
        p = "/api/2.0/serving-endpoints"
        router.add("POST", p, self.create)
        router.add("GET", p, self.list_endpoints)
        router.add("GET", p + "/{name}", self.get)
        router.add("DELETE", p + "/{name}", self.delete)
        router.add("PUT", p + "/{name}/config", self.update_config)
        router.add("GET", p + "/{name}/openapi", self.openapi)
        router.add("PUT", p + "/{name}/ai-gateway", self.put_ai_gateway)
        router.add("PATCH", p + "/{name}/tags", self.patch_tags)
        router.add("GET", p + "/{name}/served-models/{served_model}/build-logs", self.build_logs)
        router.add("GET", p + "/{name}/served-models/{served_model}/logs", self.logs)
        router.add("POST", "/serving-endpoints/{name}/invocations", self.invocations)
        router.add("POST", "/serving-endpoints/{name}/served-models/{served_model}/invocations", self.invocations)

    def reseed(self, seed: int) -> None:
        """Restart the generator that routes queries between served entities."""
        with self._rng_lock:
            self._rng.seed(seed)

    # ------------------------------------------------------------------ config parsing
    def _parse_config(
        self, endpoint_id: str, endpoint_name: str, raw: Any, previous: EndpointConfig | None, version: int
    ) -> EndpointConfig:
        """Validate an ``EndpointCoreConfigInput`` body and build the config it describes.

        Rules from the SDK's docstrings: served-entity names default to ``entity_name-entity_version``
        (last component of a dotted Unity Catalog name [INF]); names are unique and use
        alphanumerics, ``-`` and ``_``; at most 10 entities; one entity without traffic_config gets
        a 100% route; several entities need a traffic_config whose routes name existing entities
        and sum to 100 [INF: standard behaviour, error text unverified] -> 400 INVALID_PARAMETER_VALUE.
        An update that omits the served entities keeps the current ones (update_config docstring:
        "any combination of the served entities ... and the endpoint's traffic config").
        """
        if not isinstance(raw, dict):
            raise invalid_parameter("config must be a JSON object.")
        try:
            parsed = sdk.EndpointCoreConfigInput.from_dict({**raw, "name": raw.get("name") or "-"})
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise invalid_parameter(f"Invalid endpoint config: {exc}") from exc
        now = _now_ms()
        raw_entities = raw.get("served_entities")
        raw_models = raw.get("served_models")
        if raw_entities and raw_models:
            raise invalid_parameter("Only one of served_entities and served_models may be specified.")
        entities: list[ServedEntity] = []
        if parsed.served_entities:
            for raw_e, e in zip(raw_entities, parsed.served_entities, strict=True):
                entities.append(self._entity_from_input(endpoint_id, raw_e, e, now))
        elif parsed.served_models:
            for raw_m, m in zip(raw_models, parsed.served_models, strict=True):
                entities.append(self._entity_from_legacy(endpoint_id, raw_m, m, now))
        elif previous is not None:
            entities = [
                ServedEntity(
                    name=e.name,
                    entity_name=e.entity_name,
                    entity_version=e.entity_version,
                    spec=dict(e.spec),
                    creation_timestamp=e.creation_timestamp,
                    served_entity_id=e.served_entity_id,
                    legacy=e.legacy,
                )
                for e in previous.entities
            ]
        if not entities:
            raise invalid_parameter("The endpoint config must specify at least one served entity.")
        if len(entities) > MAX_SERVED_ENTITIES:
            raise invalid_parameter(
                f"An endpoint can serve at most {MAX_SERVED_ENTITIES} entities; got {len(entities)}."
            )
        names = [e.name for e in entities]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise invalid_parameter(f"Served entity names must be unique within the endpoint: {duplicates}.")

        routes = self._parse_routes(raw.get("traffic_config"), parsed.traffic_config, entities, previous)
        auto_capture = None
        if parsed.auto_capture_config is not None:
            auto_capture = sdk.AutoCaptureConfigOutput.from_dict(parsed.auto_capture_config.as_dict())
        elif previous is not None:
            auto_capture = previous.auto_capture
        current = capture_target(LEGACY, previous.auto_capture, endpoint_name) if previous else None
        _checked_target(LEGACY, auto_capture, endpoint_name, current)
        return EndpointConfig(version, entities, routes, auto_capture, now)

    def _entity_from_input(self, endpoint_id: str, raw: Any, e: sdk.ServedEntityInput, now: int) -> ServedEntity:
        if not isinstance(raw, dict):
            raise invalid_parameter("Each served entity must be a JSON object.")
        if e.external_model is not None:
            raise invalid_parameter("External models are not supported by the local workspace.")
        if raw.get("workload_type") is not None and e.workload_type is None:
            allowed = [t.value for t in sdk.ServingModelWorkloadType]
            raise invalid_parameter(f"Invalid workload_type {raw['workload_type']!r}; expected one of {allowed}.")
        spec = e.as_dict()
        spec.pop("burst_scaling_enabled", None)  # not echoed on GET (the Databricks CLI's fake backend)
        spec.setdefault("workload_type", sdk.ServingModelWorkloadType.CPU.value)  # default CPU [SRC]
        return self._entity(endpoint_id, e.name, e.entity_name, e.entity_version, spec, now, legacy=False)

    def _entity_from_legacy(self, endpoint_id: str, raw: Any, m: sdk.ServedModelInput, now: int) -> ServedEntity:
        """Legacy ``served_models`` (model_name/model_version) mapped onto a served entity."""
        if not isinstance(raw, dict):
            raise invalid_parameter("Each served model must be a JSON object.")
        if raw.get("workload_type") is not None and m.workload_type is None:
            allowed = [t.value for t in sdk.ServedModelInputWorkloadType]
            raise invalid_parameter(f"Invalid workload_type {raw['workload_type']!r}; expected one of {allowed}.")
        spec = m.as_dict()
        spec.pop("burst_scaling_enabled", None)
        spec.pop("model_name", None)
        spec.pop("model_version", None)
        spec.setdefault("workload_type", sdk.ServingModelWorkloadType.CPU.value)
        return self._entity(endpoint_id, m.name, m.model_name, m.model_version, spec, now, legacy=True)

    def _entity(
        self,
        endpoint_id: str,
        name: str | None,
        entity_name: Any,
        entity_version: Any,
        spec: dict[str, Any],
        now: int,
        *,
        legacy: bool,
    ) -> ServedEntity:
        if not isinstance(entity_name, str) or not entity_name.strip():
            raise invalid_parameter("entity_name is required for every served entity.")
        if isinstance(entity_version, int) and not isinstance(entity_version, bool):
            entity_version = str(entity_version)
        if not isinstance(entity_version, str) or not _VERSION.match(entity_version):
            raise invalid_parameter(
                f"entity_version of {entity_name} must be a registered model version number; got {entity_version!r}."
            )
        if name is None:
            # Default name: entity_name-entity_version (the SDK's docstring); dots are not allowed in
            # served entity names, so a Unity Catalog name keeps its last component [INF].
            name = f"{entity_name.split('.')[-1]}-{entity_version}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise invalid_parameter(
                f"Invalid served entity name {name!r}: use only alphanumeric characters, dashes and underscores."
            )
        spec = {**spec, "name": name, "entity_name": entity_name, "entity_version": entity_version}
        sid = uuid.uuid5(uuid.NAMESPACE_URL, f"local-serving/{endpoint_id}/{name}/{entity_name}/{entity_version}")
        return ServedEntity(name, entity_name, entity_version, spec, now, sid.hex, legacy=legacy)

    @staticmethod
    def _parse_routes(
        raw: Any,
        traffic: sdk.TrafficConfig | None,
        entities: list[ServedEntity],
        previous: EndpointConfig | None,
    ) -> list[tuple[str, int]]:
        names = {e.name for e in entities}
        if raw is None:
            if previous is not None and previous.routes and {e.name for e in previous.entities} == names:
                return list(previous.routes)  # same entities, no new traffic_config: keep the routes [INF]
            if len(entities) == 1:
                return [(entities[0].name, 100)]  # single entity default, echoed on GET (the CLI's fake)
            raise invalid_parameter(
                "traffic_config is required when the endpoint config has more than one served entity."
            )
        if (
            not isinstance(raw, dict)
            or traffic is None
            or not isinstance(raw.get("routes"), list)
            or not traffic.routes
        ):
            raise invalid_parameter("traffic_config.routes must be a non-empty list of routes.")
        routes: list[tuple[str, int]] = []
        for r in traffic.routes:
            target = r.served_entity_name or r.served_model_name
            if r.served_entity_name and r.served_model_name and r.served_entity_name != r.served_model_name:
                raise invalid_parameter(
                    f"Route names two different entities: {r.served_entity_name!r} and {r.served_model_name!r}."
                )
            if not target:
                raise invalid_parameter("Every route must name a served entity (served_entity_name).")
            if target not in names:
                raise invalid_parameter(
                    f"Route refers to served entity {target!r}, which is not in the config; known: {sorted(names)}."
                )
            pct = r.traffic_percentage
            if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
                raise invalid_parameter(
                    f"traffic_percentage of {target!r} must be an integer between 0 and 100; got {pct!r}."
                )
            if target in {n for n, _ in routes}:
                raise invalid_parameter(f"More than one route refers to served entity {target!r}.")
            routes.append((target, pct))
        total = sum(p for _, p in routes)
        if total != 100:
            raise invalid_parameter(f"The traffic percentages of the routes must sum to 100; got {total}.")
        return routes

    # ------------------------------------------------------------------ rendering
    def _entity_output(self, e: ServedEntity) -> sdk.ServedEntityOutput:
        state: dict[str, Any] = {"deployment": e.deployment}
        if e.message:
            state["deployment_state_message"] = e.message
        return sdk.ServedEntityOutput.from_dict(
            {**e.spec, "creator": self.user, "creation_timestamp": e.creation_timestamp, "state": state}
        )

    def _model_output(self, e: ServedEntity) -> sdk.ServedModelOutput:
        spec = {k: v for k, v in e.spec.items() if k not in ("entity_name", "entity_version")}
        state: dict[str, Any] = {"deployment": e.deployment}
        if e.message:
            state["deployment_state_message"] = e.message
        return sdk.ServedModelOutput.from_dict(
            {
                **spec,
                "model_name": e.entity_name,
                "model_version": e.entity_version,
                "creator": self.user,
                "creation_timestamp": e.creation_timestamp,
                "state": state,
            }
        )

    @staticmethod
    def _traffic(cfg: EndpointConfig) -> sdk.TrafficConfig:
        # The echoed route carries both served_entity_name and served_model_name (the CLI's fake).
        return sdk.TrafficConfig(
            routes=[sdk.Route(traffic_percentage=p, served_entity_name=n, served_model_name=n) for n, p in cfg.routes]
        )

    def _config_output(self, cfg: EndpointConfig) -> sdk.EndpointCoreConfigOutput:
        legacy = [e for e in cfg.entities if e.legacy]
        return sdk.EndpointCoreConfigOutput(
            auto_capture_config=cfg.auto_capture,
            config_version=cfg.version,
            served_entities=[self._entity_output(e) for e in cfg.entities],
            served_models=[self._model_output(e) for e in legacy] or None,
            traffic_config=self._traffic(cfg),
        )

    def _pending_output(self, cfg: EndpointConfig) -> sdk.EndpointPendingConfig:
        # The pending config is the output config plus its start time.
        return sdk.EndpointPendingConfig.from_dict({**self._config_output(cfg).as_dict(), "start_time": cfg.start_time})

    @staticmethod
    def _state(ep: Endpoint) -> sdk.EndpointState:
        return sdk.EndpointState(
            config_update=sdk.EndpointStateConfigUpdate(ep.config_update),
            ready=sdk.EndpointStateReady(ep.ready),
        )

    def _detailed(self, ep: Endpoint) -> dict[str, Any]:
        """``ServingEndpointDetailed`` on the wire; state uses ``config_update``."""
        return sdk.ServingEndpointDetailed(
            ai_gateway=ep.ai_gateway,
            budget_policy_id=ep.budget_policy_id,
            config=self._config_output(ep.config) if ep.config else None,
            creation_timestamp=ep.creation_timestamp,
            creator=ep.creator,
            description=ep.description,
            email_notifications=ep.email_notifications,
            id=ep.id,
            last_updated_timestamp=ep.last_updated_timestamp,
            name=ep.name,
            pending_config=self._pending_output(ep.pending) if ep.pending else None,
            permission_level=sdk.ServingEndpointDetailedPermissionLevel.CAN_MANAGE,
            route_optimized=ep.route_optimized,
            state=self._state(ep),
            tags=list(ep.tags) or None,
            telemetry_config=ep.telemetry_config,
        ).as_dict()

    def _summary(self, ep: Endpoint) -> dict[str, Any]:
        """``ServingEndpoint`` summary for list: config is an EndpointCoreConfigSummary
        of the active config, or of the pending one while nothing is active [INF]."""
        cfg = ep.config or ep.pending
        summary = None
        if cfg is not None:
            summary = sdk.EndpointCoreConfigSummary(
                served_entities=[
                    sdk.ServedEntitySpec(entity_name=e.entity_name, entity_version=e.entity_version, name=e.name)
                    for e in cfg.entities
                ]
            )
        return sdk.ServingEndpoint(
            ai_gateway=ep.ai_gateway,
            budget_policy_id=ep.budget_policy_id,
            config=summary,
            creation_timestamp=ep.creation_timestamp,
            creator=ep.creator,
            description=ep.description,
            id=ep.id,
            last_updated_timestamp=ep.last_updated_timestamp,
            name=ep.name,
            state=self._state(ep),
            tags=list(ep.tags) or None,
        ).as_dict()

    def _require(self, name: str) -> Endpoint:
        """Missing endpoint -> 404 RESOURCE_DOES_NOT_EXIST."""
        ep = self._endpoints.get(name)
        if ep is None:
            raise does_not_exist(f"Serving endpoint with name {name} does not exist.")
        return ep

    # ------------------------------------------------------------------ handlers
    def create(self, req: Request) -> Response:
        """POST /api/2.0/serving-endpoints. Answers the new endpoint with
        ``{ready: NOT_READY, config_update: IN_PROGRESS}`` and ``pending_config`` version 1;
        the response carries ``name`` because the SDK's Wait binds to it."""
        body = req.json()
        name = body.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise invalid_parameter(
                f"Invalid endpoint name {name!r}: use only alphanumeric characters, dashes and underscores."
            )
        if body.get("config") is None:
            raise invalid_parameter("config is required: the endpoint must serve at least one entity.")
        try:
            tags = [sdk.EndpointTag.from_dict(t) for t in body.get("tags") or []]
            ai_gateway = sdk.AiGatewayConfig.from_dict(body["ai_gateway"]) if body.get("ai_gateway") else None
            notifications = (
                sdk.EmailNotifications.from_dict(body["email_notifications"])
                if body.get("email_notifications")
                else None
            )
            telemetry = (
                sdk.TelemetryConfig.from_dict(body["telemetry_config"]) if body.get("telemetry_config") else None
            )
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise invalid_parameter(f"Invalid request: {exc}") from exc
        if any(not isinstance(t.key, str) or not t.key for t in tags):
            raise invalid_parameter("Every tag needs a key.")
        endpoint_id = uuid.uuid4().hex
        cfg = self._parse_config(endpoint_id, name, body["config"], None, 1)
        targets = [_checked_target(AI_GATEWAY, ai_gateway.inference_table_config if ai_gateway else None, name, None),
                   capture_target(LEGACY, cfg.auto_capture, name)]
        _refuse_both(*targets)
        now = _now_ms()
        with self.lock:
            if name in self._endpoints:
                raise already_exists(f"Serving endpoint with name {name} already exists.")
            ep = Endpoint(
                name=name,
                id=endpoint_id,
                creator=self.user,
                creation_timestamp=now,
                last_updated_timestamp=now,
                description=body.get("description") or "",
                tags=tags,
                ai_gateway=ai_gateway,
                email_notifications=notifications,
                budget_policy_id=body.get("budget_policy_id"),
                route_optimized=bool(body.get("route_optimized", False)),
                telemetry_config=telemetry,
            )
            self._endpoints[name] = ep
            self._start_update(ep, cfg)
            for target in targets:
                if target is not None:
                    self.inference.enable(target)
            return Response(body=self._detailed(ep))

    def list_endpoints(self, req: Request) -> Response:
        """GET /api/2.0/serving-endpoints -> ``{"endpoints": [ServingEndpoint...]}``."""
        with self.lock:
            return Response(body={"endpoints": [self._summary(ep) for ep in self._endpoints.values()]})

    def endpoints(self) -> list[Endpoint]:
        with self.lock:
            return list(self._endpoints.values())

    def get(self, req: Request, name: str) -> Response:
        with self.lock:
            return Response(body=self._detailed(self._require(name)))

    def delete(self, req: Request, name: str) -> Response:
        """DELETE /api/2.0/serving-endpoints/{name}; an update in flight is abandoned."""
        with self.lock:
            ep = self._require(name)
            ep.generation += 1
            del self._endpoints[name]
        return Response(body={})

    def update_config(self, req: Request, name: str) -> Response:
        """PUT /api/2.0/serving-endpoints/{name}/config.

        "An endpoint that already has an update in progress can not be updated until the current
        update completes or fails" [SRC docstring] -> 409 RESOURCE_CONFLICT [FAKE status, INF text].
        """
        body = req.json()
        with self.lock:
            ep = self._require(name)
            if ep.config_update == IN_PROGRESS:
                pending = ep.pending.version if ep.pending else "?"
                raise conflict(
                    f"Endpoint {name} is currently updating (config version {pending})."
                    " Wait for the update to complete or fail before updating it again."
                )
            cfg = self._parse_config(ep.id, name, body, ep.config, ep.last_version + 1)
            legacy = capture_target(LEGACY, cfg.auto_capture, name)
            _refuse_both(_gateway_target(ep.ai_gateway, name), legacy)
            ep.last_updated_timestamp = _now_ms()
            self._start_update(ep, cfg)
            if legacy is not None:
                self.inference.enable(legacy)
            return Response(body=self._detailed(ep))

    def put_ai_gateway(self, req: Request, name: str) -> Response:
        """PUT .../ai-gateway replaces the whole gateway config; an empty body unsets
        it (the Databricks CLI's fake backend).
        Enabling its inference table creates the payload table (at the next delivery)."""
        body = req.json()
        fields = ("fallback_config", "guardrails", "inference_table_config", "rate_limits", "usage_tracking_config")
        try:
            gateway = sdk.AiGatewayConfig.from_dict({k: body[k] for k in fields if body.get(k) is not None})
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise invalid_parameter(f"Invalid AI Gateway config: {exc}") from exc
        with self.lock:
            ep = self._require(name)
            target = _checked_target(AI_GATEWAY, gateway.inference_table_config, name,
                                     _gateway_target(ep.ai_gateway, name))
            for cfg in (ep.config, ep.pending):
                _refuse_both(target, capture_target(LEGACY, cfg.auto_capture, name) if cfg else None)
            ep.ai_gateway = gateway if any(body.get(k) is not None for k in fields) else None
            ep.last_updated_timestamp = _now_ms()
            if target is not None:
                self.inference.enable(target)
            out = sdk.PutAiGatewayResponse.from_dict(ep.ai_gateway.as_dict() if ep.ai_gateway else {})
            return Response(body=out.as_dict())

    def patch_tags(self, req: Request, name: str) -> Response:
        """PATCH .../tags with ``add_tags`` / ``delete_tags`` -> ``{"tags": [...]}``."""
        body = req.json()
        try:
            add = [sdk.EndpointTag.from_dict(t) for t in body.get("add_tags") or []]
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise invalid_parameter(f"Invalid add_tags: {exc}") from exc
        delete = body.get("delete_tags") or []
        if not isinstance(delete, list) or not all(isinstance(k, str) for k in delete):
            raise invalid_parameter("delete_tags must be a list of tag keys.")
        if any(not isinstance(t.key, str) or not t.key for t in add):
            raise invalid_parameter("Every tag needs a key.")
        with self.lock:
            ep = self._require(name)
            tags = {t.key: t for t in ep.tags if t.key not in delete}
            tags.update({t.key: t for t in add})
            ep.tags = list(tags.values())
            ep.last_updated_timestamp = _now_ms()
            return Response(body=sdk.EndpointTags(tags=ep.tags).as_dict())

    def build_logs(self, req: Request, name: str, served_model: str) -> Response:
        """GET .../served-models/{served_model_name}/build-logs -> ``{"logs": "..."}``: here, the
        provisioning log of that served entity, including why a deployment failed."""
        with self.lock:
            ep = self._require(name)
            if served_model not in ep.build_logs:
                raise does_not_exist(f"Served model {served_model} does not exist in endpoint {name}.")
            return Response(body=sdk.BuildLogsResponse(logs="\n".join(ep.build_logs[served_model])).as_dict())

    def logs(self, req: Request, name: str, served_model: str) -> Response:
        """GET .../served-models/{served_model_name}/logs -> ``{"logs": "..."}``: scoring errors of that entity."""
        with self.lock:
            ep = self._require(name)
            if served_model not in ep.build_logs:
                raise does_not_exist(f"Served model {served_model} does not exist in endpoint {name}.")
            lines = ep.server_logs.get(served_model, deque())
            return Response(body=sdk.ServerLogsResponse(logs="\n".join(lines)).as_dict())

    def openapi(self, req: Request, name: str) -> Response:
        """GET .../openapi: the query schema as an OpenAPI JSON document, sent as text (the SDK asks
        for ``Accept: text/plain`` and does not parse it). Describes the active
        config, or the pending one while nothing is active; typed from each model's MLflow signature."""
        with self.lock:
            ep = self._require(name)
            cfg = ep.config if ep.config and ep.ready == READY else (ep.pending or ep.config)
            if cfg is None:
                raise bad_request(f"Endpoint {name} has no config.")
            entities = [(e.name, e.entity_name, e.entity_version) for e in cfg.entities]
            version = cfg.version
        described = []
        for served_name, entity_name, entity_version in entities:
            loaded = self.models.cached(entity_name, entity_version)
            signature = getattr(loaded.model.metadata, "signature", None) if loaded else None
            described.append((served_name, signature))
        doc = build_document(self._base_url(), name, version, described)
        return Response(body=json.dumps(doc, indent=2), content_type="text/plain; charset=utf-8")

    # ------------------------------------------------------------------ provisioning
    def _start_update(self, ep: Endpoint, cfg: EndpointConfig) -> None:
        """Caller holds the lock. Puts ``cfg`` in pending_config and starts its provisioning thread."""
        ep.last_version = cfg.version
        ep.pending = cfg
        ep.config_update = IN_PROGRESS
        ep.generation += 1
        for e in cfg.entities:
            ep.build_logs.setdefault(e.name, [])
            ep.build_logs[e.name].append(
                _stamp(
                    f"config version {cfg.version}: provisioning served entity {e.name}"
                    f" (model {e.entity_name} version {e.entity_version})"
                )
            )
        thread = threading.Thread(
            target=self._provision,
            args=(ep.name, ep.generation, cfg),
            name=f"provision-{ep.name}-v{cfg.version}",
            daemon=True,
        )
        self._threads.add(thread)
        thread.start()

    def _provision(self, name: str, generation: int, cfg: EndpointConfig) -> None:
        try:
            if self._stopping.wait(max(self.faults.provisioning_seconds, 0.0)):
                return
            failures: dict[str, str] = {}
            notes: dict[str, str] = {}
            for e in cfg.entities:
                if self.faults.fails_load(e.entity_name, e.entity_version):
                    failures[e.name] = (
                        f"Failed to deploy {e.name}: model {e.entity_name} version {e.entity_version}"
                        " could not be loaded (injected fault fail_load)."
                    )
                    continue
                try:
                    loaded = self.models.load(e.entity_name, e.entity_version)
                    notes[e.name] = f"model loaded in {loaded.load_seconds:.2f}s"
                except ModelLoadError as exc:
                    failures[e.name] = f"Failed to deploy {e.name}: {exc}"
            self._settle(name, generation, cfg, failures, notes)
        except Exception:  # never let a provisioning thread die silently
            log.exception("provisioning of %s failed unexpectedly", name)
            self._settle(
                name, generation, cfg, {e.name: "Internal error while provisioning." for e in cfg.entities}, {}
            )
        finally:
            self._threads.discard(threading.current_thread())

    def _settle(
        self, name: str, generation: int, cfg: EndpointConfig, failures: dict[str, str], notes: dict[str, str]
    ) -> None:
        """As the endpoint state is documented: success -> config := pending, NOT_UPDATING, READY;
        failure -> UPDATE_FAILED,
        pending_config dropped, previous config still serving, ``ready`` unchanged."""
        activated: list[dict[str, Any]] = []
        with self.lock:
            ep = self._endpoints.get(name)
            if ep is None or ep.generation != generation:
                return  # deleted or superseded while provisioning
            if failures:
                first = next(iter(failures))
                for e in cfg.entities:
                    if e.name in failures:
                        e.deployment, e.message = DEPLOYMENT_FAILED, failures[e.name]
                    else:
                        e.deployment = DEPLOYMENT_ABORTED
                        e.message = f"Deployment aborted because served entity {first} failed."
                    ep.build_logs[e.name].append(_stamp(e.message))
                ep.pending = None
                ep.config_update = UPDATE_FAILED
                if ep.config is None or ep.ready == NOT_READY:
                    # Nothing was serving: show the failed config so the reason is visible on GET [INF].
                    ep.config = cfg
                    ep.ready = NOT_READY
            else:
                for e in cfg.entities:
                    e.deployment, e.message = DEPLOYMENT_READY, ""
                    ep.build_logs[e.name].append(_stamp(f"served entity {e.name} is ready ({notes.get(e.name, '')})"))
                ep.config = cfg
                ep.pending = None
                ep.config_update = NOT_UPDATING
                ep.ready = READY
                change_time = datetime.now(UTC)
                activated = [
                    {
                        "served_entity_id": e.served_entity_id,
                        "endpoint_name": ep.name,
                        "endpoint_id": ep.id,
                        "served_entity_name": e.name,
                        "entity_type": "CUSTOM_MODEL",
                        "entity_name": e.entity_name,
                        "entity_version": e.entity_version,
                        "endpoint_config_version": cfg.version,
                        "change_time": change_time,
                    }
                    for e in cfg.entities
                ]
        if activated:
            self.inference.record_served_entities(activated)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the provisioning threads, then close the pooled online-store connections
        (a later lookup opens new ones)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0.0))
        self.feature_stores.close()

    # ------------------------------------------------------------------ invocations
    def invocations(self, req: Request, name: str, served_model: str | None = None) -> Response:
        """POST /serving-endpoints/{name}/invocations (MLflow scoring protocol).

        Routes by the traffic percentages of the active config (weighted random, drawn from the
        generator ``reseed`` restarts, so a seed fixes the sequence), scores with the loaded pyfunc
        model and answers ``{"predictions": ...}`` with the ``served-model-name`` header.
        ``/served-models/{served_model}/invocations`` queries one entity directly, whatever its
        route, 0% included (Databricks docs: "Query individual models behind an endpoint"; path [INF]).

        The chosen entity's injected faults (``Faults.entity_faults``) apply once the request is
        valid: its latency is slept and counted in ``execution_duration_ms``; a drawn error answers
        500 INTERNAL_ERROR naming the entity (captured with that status, the entity's id and the
        latency as its duration); a bias is added to every numeric prediction it answers.

        An endpoint with no ready config answers 503 TEMPORARILY_UNAVAILABLE while its first update
        is in progress (the SDK retries 503, so a query made right after create waits for it, as a
        cold start would), and 400 BAD_REQUEST otherwise (a failed create: retrying cannot help).
        Both choices are [INF]. Every answered query is captured to the endpoint's inference table
        when one is enabled (``Endpoint.capture_target``), in the next delivery.
        """
        started = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        with self.lock:
            ep = self._require(name)
            target = ep.capture_target()
            requester = None if ep.route_optimized else self.user  # NULL when route-optimized
            cfg = ep.config if ep.ready == READY else None
            updating = ep.config_update == IN_PROGRESS
            candidates: list[tuple[ServedEntity, int]] = []
            if cfg is not None:
                if served_model is not None:
                    e = cfg.entity(served_model)
                    if e is None:
                        raise does_not_exist(f"Served model {served_model} does not exist in endpoint {name}.")
                    candidates = [(e, 100)] if e.deployment == DEPLOYMENT_READY else []
                else:
                    for entity_name, pct in cfg.routes:
                        e = cfg.entity(entity_name)
                        if e is not None and pct > 0 and e.deployment == DEPLOYMENT_READY:
                            candidates.append((e, pct))

        payload: Any = None
        parse_error: Exception | None = None
        try:
            payload = json.loads(req.body) if req.body.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            parse_error = exc
        client_request_id = None
        if isinstance(payload, dict) and isinstance(payload.get("client_request_id"), str):
            client_request_id = payload["client_request_id"]

        chosen: ServedEntity | None = None
        exec_ms: int | None = None
        try:
            if not candidates:
                if updating:
                    raise temporarily_unavailable(
                        f"Endpoint {name} is not ready yet: its config update is in progress."
                    )
                raise bad_request(f"Endpoint {name} is not ready: it has no ready served entity to route to.")
            chosen = self._pick(candidates)
            if parse_error is not None:
                raise bad_request(f"Ensure that input is a valid JSON formatted string. Error: {parse_error!r}")
            if not isinstance(payload, dict):
                raise bad_request(f"{required_input_message()}. Received {type(payload).__name__}.")
            present = sorted(set(payload) & input_fields())
            if len(present) != 1:
                raise bad_request(
                    f"{required_input_message()}. Received dictionary with input fields: {list(payload)}."
                )
            fault = self.faults.for_entity(chosen.entity_name, chosen.entity_version)
            slept_ms = _slow_down(fault.latency_ms)
            if self.faults.roll(fault.error_rate):
                exec_ms = slept_ms  # the entity took its time, then failed
                failure = ApiError(500, "INTERNAL_ERROR", (
                    f"Served entity {chosen.name} (model {chosen.entity_name} version {chosen.entity_version}) of "
                    f"endpoint {name} failed to answer the query (injected fault entity_faults error_rate)."))
                self._server_log(name, chosen.name, f"500 {failure.message}")
                raise failure
            loaded = self.models.cached(chosen.entity_name, chosen.entity_version)
            if loaded is None:  # evicted or never loaded in this process: load on demand
                try:
                    loaded = self.models.load(chosen.entity_name, chosen.entity_version)
                except ModelLoadError as exc:
                    raise temporarily_unavailable(f"Served entity {chosen.name} is unavailable: {exc}") from exc
            content_type = req.headers.get("content-type") or "application/json"
            if content_type.split(";")[0].strip() != "application/json":
                content_type = "application/json"  # the SDK always sends JSON; other types are not emulated
            if loaded.feature_spec is not None:
                result = self._score_with_features(name, chosen, loaded, payload)
            else:
                result = score(loaded.model, payload, content_type)
            exec_ms = slept_ms + result.execution_ms
            body = _biased(result.body, fault.bias) if result.status == 200 and fault.bias else result.body
            response = Response(result.status, body, headers={"served-model-name": chosen.name})
            if result.status != 200:
                self._server_log(name, chosen.name, f"{result.status} {result.body}")
        except ApiError as err:
            response = Response.error(err)
            if chosen is not None:
                response.headers["served-model-name"] = chosen.name

        if target is not None:
            self.inference.capture(target, InferenceRecord(
                databricks_request_id=request_id,
                client_request_id=client_request_id,
                request_time=started,
                status_code=response.status,
                execution_duration_ms=exec_ms,
                request=req.text(),
                response=response.encoded().decode("utf-8", errors="replace"),
                served_entity_id=chosen.served_entity_id if chosen else None,
                requester=requester,
                endpoint_name=name,
                model_name=chosen.entity_name if chosen else None,
                model_version=chosen.entity_version if chosen else None,
            ))
        response.headers["x-request-id"] = request_id
        return response

    def _score_with_features(
        self, name: str, entity: ServedEntity, loaded: LoadedModel, payload: dict[str, Any]
    ) -> ScoreResult:
        """Look the model's features up for the request rows, join them and score (``feature_lookup``).
        Lookup failures raise ApiError; the scoring result carries the lookup time in execution_ms."""
        frame, params = request_frame(payload)
        who = f"served entity {entity.name} of endpoint {name}"
        try:
            joined, stats = augment(
                frame,
                loaded.feature_spec,
                catalog=self.online_catalog,
                environment=dict(entity.spec.get("environment_vars") or {}),
                pool=self.feature_stores,
                input_schema=loaded.model.metadata.get_input_schema(),
                who=who,
            )
        except ApiError as err:
            self._server_log(name, entity.name, f"{err.status} feature lookup failed: {err.message}")
            raise
        line = f"{stats.describe()} for {len(frame)} row(s)"
        log.debug("%s: %s", who, line)
        self._server_log(name, entity.name, line)
        result = score_frame(loaded.model, joined, params)
        result.execution_ms += int(stats.seconds * 1000)
        return result

    def _pick(self, candidates: list[tuple[ServedEntity, int]]) -> ServedEntity:
        with self._rng_lock:
            return self._rng.choices([e for e, _ in candidates], weights=[p for _, p in candidates], k=1)[0]

    def _server_log(self, name: str, served: str, line: str) -> None:
        with self.lock:
            ep = self._endpoints.get(name)
            if ep is not None:
                ep.server_logs.setdefault(served, deque(maxlen=200)).append(_stamp(line))

    # ------------------------------------------------------------------ helpers for local tooling
    def endpoint_names(self) -> list[str]:
        with self.lock:
            return sorted(self._endpoints)
