"""The rollout: a persisted state machine that one queue message advances by one step.

Every strategy (shared.delivery.policy) goes resolve → validate → features → deploy →
wait_deploy → smoke, where the candidate sits beside the serving entities at a 0% route and is
smoke-queried through its own served entity, so no caller is answered by it before it passed
(docs/architecture.md principle 6). Then traffic stages: shift → wait_shift → bake → analyze for each canary
step or the A/B split, promote (aliases; the previous champion kept as the rollback pointer),
shift to 100% → wait_shift → bake (the old entities stay at 0%: a rollback is traffic only),
retire (the old entities removed) → wait_retire → done. A failed gate, a Failed or Error
analysis, an ``abort`` or a ``rollback`` goes rollback → wait_rollback (the previous config's
routes restored at once, the candidate kept at 0% for ``abort_delay`` if it took traffic) →
retire → wait_retire → failed / aborted / rolled_back. An endpoint that served nothing before
the rollout is deleted instead: nothing is left to restore.

Each message names a rollout and the sequence number it expects; it is a hint, the row is
the truth. A step runs only when the stored sequence matches and the worker has first
claimed that step in the row (a conditional write on the ETag, lasting ``COMMAND_CLAIM_SECONDS``,
shared.rollouts L5); any other worker holding a message of the same step drops it. Side effects
on Databricks and the registry happen only after the claim; the transition then commits
conditionally on the claim's ETag, and only after that commit is the next step's message
sent. So duplicated, late and replayed messages (a joining command's re-sent hint, a
redelivery) do nothing, a worker that lost the row sends nothing, and a crash between the commit
and the send leaves a rollout whose ``due_at`` passes: the repair sweep re-sends its step
(handlers/repair.py). A worker that dies holding a claim leaves it to expire, and the step is
taken over; the steps read the endpoint before they write it, so the step taken over does not
write what already landed. A step that must wait for Databricks re-enqueues its rollout with a
capped exponential delay, and a bake with the exact time left; no function sleeps on the
platform. A paused rollout (an operator's ``pause``, an inconclusive analysis) consumes its
message and waits for ``resume`` or ``promote`` (handlers/steering.py), which send the next one.
Ending a rollout commits its terminal state and the lease hand-over in one transaction
(shared.rollouts); what follows (waking the next holder, closing the record that asked for it)
is idempotent and is done again by any later message of the ended rollout and by the repair
sweep (handlers/repair.py), so a crash at any point leaves nothing running, nothing holding the
lease, and no record open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from handlers.deps import Deps
from shared import features as feature_tables
from shared import journal, rollouts, serving, smoke, telemetry
from shared.app_state import note_denied
from shared.delivery import analysis as runs
from shared.delivery import store as analyses
from shared.delivery.judge import verdicts
from shared.log import correlated, step
from shared.monitoring import store as monitor_store
from shared.monitoring.policy import seconds
from shared.monitoring.store import DECISION_TAG
from shared.policy import Environment, ModelPolicy, PolicyError
from shared.queues import ROLLOUT_QUEUE, enqueue
from shared.registry import VersionNotFound, aliases, delete_alias, get_version, resolve, set_aliases
from shared.statements import StatementPending
from shared.tables import ConcurrencyConflict, Entity

# Until it reaches ``deploy`` a newer rollout may take over (supersede) this one. Not in
# ``deploy`` itself: its write may have reached the endpoint while its commit failed, and a
# version written but never smoke-tested must be seen through to its smoke or its rollback.
_SUPERSEDABLE = frozenset({"resolve", "validate", "features"})
# Steps where the endpoint may carry the candidate: trouble there restores the previous config.
_ON_ENDPOINT = frozenset({"deploy", "wait_deploy", "smoke", "shift", "wait_shift", "bake", "analyze", "promote"})
_MAX_STEP_ERRORS = 5
# Argo Rollouts retries a measurement that errored after 10 s, not after the interval
# (``DefaultErrorRetryInterval`` in ``analysis/analysis.go``, https://github.com/argoproj/argo-rollouts).
_ERROR_RETRY_SECONDS = 10.0
# A bake longer than this is looked at again after it: a queue message waits at most 7 days.
_MAX_AFTER = 86400.0
_STATEMENT_BUDGET = 20.0
_ANALYSES_KEPT = 20


@dataclass(frozen=True)
class Transition:
    step: str | None = None  # next step; None: the same step again (a wait) or the end
    status: str = "running"  # running | done | failed | aborted | rolled_back
    wait: bool = False
    after: float | None = None  # a timed wait (a bake): look again after exactly this long
    paused: dict[str, Any] | None = None  # stop here until an operator resumes or promotes
    note: str = ""
    reason: str = ""
    set: dict[str, Any] = field(default_factory=dict)


def go(next_step: str, note: str = "", **fields: Any) -> Transition:
    return Transition(step=next_step, note=note, set=fields)


def wait(note: str, **fields: Any) -> Transition:
    return Transition(wait=True, note=note, set=fields)


def later(seconds_left: float, note: str, **fields: Any) -> Transition:
    return Transition(after=max(0.0, seconds_left), note=note, set=fields)


def pause(note: str, reason: str, now: float, awaiting: str = "operator", **fields: Any) -> Transition:
    return Transition(note=note, paused={"reason": reason, "at": now, "by": "analysis", "awaiting": awaiting},
                      set=fields)


def fail(reason: str) -> Transition:
    return Transition(status="failed", reason=reason, note=reason)


def roll_back(reason: str, status: str = "failed", **fields: Any) -> Transition:
    return Transition(step="rollback", note=reason, set={"failure": reason, "ending": status, **fields})


@dataclass
class StepContext:
    deps: Deps
    row: dict[str, Any]
    model: ModelPolicy
    env: Environment

    @cached_property
    def w(self) -> Any:
        return self.deps.workspace()

    @cached_property
    def registry(self) -> Any:
        return self.deps.registry()

    @property
    def endpoint(self) -> str:
        return self.row["endpoint"]

    @property
    def target(self) -> dict[str, Any]:
        return self.row["target"]

    @property
    def candidate(self) -> dict[str, Any]:
        return self.row["candidate"]

    @property
    def stages(self) -> list[dict[str, Any]]:
        return self.env.strategy.stages()

    def waited_too_long(self) -> bool:
        started = self.row.get("wait_started")
        return started is not None and self.deps.clock() - started > self.env.wait_timeout_seconds

    def read(self) -> serving.EndpointView:
        return serving.read(self.w, self.endpoint)

    def shifted(self, weight: int) -> dict[str, Any]:
        """The config with the candidate at ``weight``: beside the previous entities, or alone."""
        previous = self.row.get("previous")
        return serving.split(previous, self.candidate, weight) if previous else serving.only(self.target,
                                                                                               self.candidate["name"])


def _listed(versions: list[str]) -> str:
    """Versions in a note as a person reads them ("2, 3"; "none"), not as a Python list."""
    return ", ".join(versions) or "none"


def _champion(previous: dict[str, Any] | None) -> str | None:
    """The version with the largest share of the config that serves."""
    shares = serving.routes(previous)
    if not previous or not shares:
        return None
    top = max(shares, key=lambda n: shares[n])
    return next(str(e["entity_version"]) for e in previous["served_entities"] if e["name"] == top)


def step_resolve(ctx: StepContext) -> Transition:
    req = ctx.row.get("requested") or {}
    try:
        info = resolve(ctx.registry, ctx.model.name, req.get("version"), req.get("alias"))
    except VersionNotFound as exc:
        return fail(str(exc))
    view = ctx.read()
    candidate = serving.entity(ctx.model.name, info.version, ctx.env.served_entity)
    alone = serving.config([candidate], {candidate["name"]: 100})
    # The config that serves now is what a failed rollout restores. It is read before this
    # rollout writes anything, and no other rollout writes while we hold the lease. A candidate
    # left in it (an aborted rollout's, at 0%) is not part of it.
    previous = serving.without(view.active, candidate["name"]) if view.active else None
    if previous is not None and not previous["served_entities"]:
        previous = None
    target = serving.split(previous, candidate, 0) if previous else alone
    before = aliases(ctx.registry, ctx.model.name)
    fields = {"version": info.version, "previous": previous, "target": target, "candidate": candidate,
              "champion": _champion(previous), "stage": 0, "weight": 0,
              "pointer": {a: before.get(a) for a in _lifecycle(ctx)},
              "fallback_on": serving.fallback_on(ctx.w, ctx.endpoint) if view.exists else False}
    on_endpoint = bool(view.active) and candidate["name"] in serving.routes(view.active) and not view.updating
    if req.get("retire_kept"):
        return _retire_kept(ctx, view, candidate)
    if req.get("undo") and on_endpoint and previous is not None:
        # Kept at 0% for the rollback window (_final_keeping): the undo is a route change.
        return go("promote", f"version {info.version} is on the endpoint at 0% (kept for the rollback window): "
                  "moving the traffic back", **{**fields, "target": view.active, "stage": len(ctx.stages)})
    if view.serves(alone) and not view.updating:
        return go("promote", f"version {info.version} already serves", **{**fields, "previous": None, "target": alone,
                                                                          "stage": len(ctx.stages)})
    return go("validate", f"resolved version {info.version}", **fields)


def _retire_kept(ctx: StepContext, view: serving.EndpointView, candidate: dict[str, Any]) -> Transition:
    """The rollback window is over: the serving version alone, the kept entity removed."""
    if not view.active or candidate["name"] not in serving.routes(view.active) or view.updating:
        # Not a failure of the version that serves: reconcile must not take it for one.
        return _end(ctx, "the endpoint changed since the rollback window began; nothing retired")
    final = serving.only(view.active, candidate["name"])
    if view.serves(final):
        return _end(ctx, f"version {candidate['entity_version']} already serves alone")
    return go("retire", "the rollback window is over", version=str(candidate["entity_version"]),
              previous=view.active, target=view.active, candidate=candidate, final=final,
              retire_at=ctx.deps.clock(), stage=len(ctx.stages))


def step_validate(ctx: StepContext) -> Transition:
    try:
        info = get_version(ctx.registry, ctx.model.name, ctx.row["version"])
    except VersionNotFound as exc:
        return fail(str(exc))
    if info.status == "PENDING_REGISTRATION":
        if ctx.waited_too_long():
            return fail(f"version {info.version} still PENDING_REGISTRATION after {ctx.env.wait_timeout_seconds:.0f} s")
        return wait(f"version {info.version} is PENDING_REGISTRATION")
    if info.status != "READY":
        return fail(f"version {info.version} is {info.status}: {info.status_message}".rstrip(": "))
    missing = [t for t in ctx.model.required_tags if t not in info.tags]
    if missing:
        return fail(f"version {info.version} lacks required tag(s) {missing}")
    # A version a retraining run registered names the monitor's decision that launched it.
    cause = info.tags.get(DECISION_TAG)
    return go("features", f"version {info.version} is READY" + (f" (retrained by decision {cause})" if cause else ""),
              **({"caused_by": cause} if cause else {}))
def step_features(ctx: StepContext) -> Transition:
    """Feature tables published and in sync before anything serves (traffic never moves to a
    version whose features are not ready; the endpoint is untouched if they never are)."""
    features = ctx.model.features
    if features is None:
        return go("deploy", "no feature tables")
    s = ctx.deps.settings
    if not s.warehouse_id:
        return fail("DATABRICKS_WAREHOUSE_ID is not set: feature tables are checked through a SQL warehouse")
    statuses = feature_tables.ensure(ctx.w, s.warehouse_id, features, s.env, ctx.row.get("feature_cursors") or {},
                                     now=ctx.deps.clock(), budget_seconds=s.feature_step_budget_seconds)
    summary = "; ".join(f"{st.source}: {st.note}" for st in statuses)
    if any(st.state == "failed" for st in statuses):
        return fail("features not ready, endpoint untouched: " + "; ".join(
            st.note for st in statuses if st.state == "failed"))
    if all(st.state == "ready" for st in statuses):
        return go("deploy", summary, feature_cursors=None)
    cursors = {st.source: st.cursor for st in statuses if st.cursor}
    if any(st.state == "progress" for st in statuses):
        return go("features", summary, feature_cursors=cursors)
    if ctx.waited_too_long():
        return fail(f"features not ready after {ctx.env.wait_timeout_seconds:.0f} s, endpoint untouched: {summary}")
    return Transition(wait=True, note=summary, set={"feature_cursors": cursors})


def step_deploy(ctx: StepContext) -> Transition:
    view = ctx.read()
    if view.serves(ctx.target):
        return go("wait_deploy", "endpoint already has this config")
    if view.updating:
        if ctx.waited_too_long():
            return fail("the endpoint stayed busy with another update; nothing was changed")
        return wait("endpoint is busy with another update")
    serving.write(ctx.w, ctx.endpoint, ctx.target, exists=view.exists)
    how = "beside the serving entities at 0% traffic" if ctx.row.get("previous") else "as its only served entity"
    return go("wait_deploy", ("updated" if view.exists else "created") + f" endpoint: version {ctx.row['version']} "
              + how)


def step_wait_deploy(ctx: StepContext) -> Transition:
    view = ctx.read()
    if view.updating or (view.serves(ctx.target) and view.ready != "READY"):
        if ctx.waited_too_long():
            return roll_back(f"endpoint not ready after {ctx.env.wait_timeout_seconds:.0f} s")
        return wait(f"endpoint {view.config_update}/{view.ready}")
    if view.serves(ctx.target):
        return go("smoke", f"endpoint READY; version {ctx.row['version']} loaded")
    detail = f": {view.message}" if view.message else ""
    return roll_back(f"endpoint update ended {view.config_update}{detail}")


def step_smoke(ctx: StepContext) -> Transition:
    table = ctx.env.inference_table
    if table is not None:
        # Before any query, so the smoke queries and everything after are captured.
        serving.ensure_capture(ctx.w, ctx.endpoint, table.catalog, table.schema_name, table.prefix or ctx.endpoint)
    served = ctx.candidate["name"]
    outcomes = smoke.run(ctx.env.smoke, lambda records: serving.query(ctx.w, ctx.endpoint, records, served=served))
    results = [{"name": o.name, "passed": o.passed, "latency_ms": round(o.latency_ms, 1), "reason": o.reason}
               for o in outcomes]
    failed = [o for o in outcomes if not o.passed]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return roll_back(f"smoke query '{failed[0].name}' failed: {failed[0].reason}{more}", smoke=results)
    note = f"{len(outcomes)} smoke queries passed on served entity {served}"
    if not ctx.row.get("previous") or not ctx.stages:
        return go("promote", note, smoke=results, stage=len(ctx.stages))
    return go("shift", note, smoke=results)


def _stage(ctx: StepContext) -> dict[str, Any]:
    """The current traffic stage; past the strategy's stages: 100% and the strategy's bake."""
    stage = ctx.row.get("stage", 0)
    if stage < len(ctx.stages):
        return ctx.stages[stage]
    return {"weight": 100, "bake": seconds(ctx.env.strategy.bake), "analysis": False}


def step_shift(ctx: StepContext) -> Transition:
    weight = _stage(ctx)["weight"]
    cfg = ctx.shifted(weight)
    view = ctx.read()
    if view.updating:
        if ctx.waited_too_long():
            return roll_back("the endpoint stayed busy; traffic was not shifted")
        return wait("endpoint is busy with another update")
    fields: dict[str, Any] = {"shift": cfg}
    notes = []
    if weight < 100:
        # The champion's fallback would retry the candidate's failures and hide them (Terraform provider
        # for Databricks, "databricks_model_serving", ``fallback_config``).
        if ctx.row.get("fallback_on"):
            serving.set_fallback(ctx.w, ctx.endpoint, False)
            notes.append("AI Gateway fallback off")
        challenger = ctx.env.aliases.challenger
        if challenger and set_aliases(ctx.registry, ctx.model.name, ctx.row["version"], [challenger]):
            notes.append(f"@{challenger} set")
    if not view.serves(cfg):
        serving.write(ctx.w, ctx.endpoint, cfg, exists=True)
    others = ", ".join(f"{n} {p}%" for n, p in serving.routes(cfg).items() if n != ctx.candidate["name"])
    notes.insert(0, f"shifting version {ctx.row['version']} to {weight}%" + (f" ({others})" if others else ""))
    return go("wait_shift", "; ".join(notes), **fields)


def step_wait_shift(ctx: StepContext) -> Transition:
    view = ctx.read()
    cfg = ctx.row["shift"]
    if view.updating or (view.serves(cfg) and view.ready != "READY"):
        if ctx.waited_too_long():
            return roll_back(f"traffic shift not done after {ctx.env.wait_timeout_seconds:.0f} s")
        return wait(f"endpoint {view.config_update}/{view.ready}")
    if not view.serves(cfg):
        detail = f": {view.message}" if view.message else ""
        return roll_back(f"traffic shift ended {view.config_update}{detail}")
    now = ctx.deps.clock()
    stage = _stage(ctx)
    return go("bake", f"{stage['weight']}% of traffic on version {ctx.row['version']}; baking {stage['bake']} s",
              weight=stage["weight"], took_traffic=True, shifted_at=now, bake_until=now + stage["bake"], extensions=0,
              run=None, analysis_cursor=None)


def _delivery_delay(ctx: StepContext) -> float:
    return float(seconds(ctx.env.strategy.analysis.delivery_delay))


def step_bake(ctx: StepContext) -> Transition:
    stage = _stage(ctx)
    ready_at = ctx.row["bake_until"] + (_delivery_delay(ctx) if stage["analysis"] else 0.0)
    left = ready_at - ctx.deps.clock()
    if left > 0:
        return later(min(left, _MAX_AFTER), f"baking: {left:.0f} s left")
    if stage["analysis"]:
        return go("analyze", "bake done; analysing")
    if ctx.row["stage"] < len(ctx.stages):
        return _next_stage(ctx, "bake done")
    return go("retire", "bake at 100% done", retire_at=ctx.deps.clock(), **_final_keeping(ctx))


def _final_keeping(ctx: StepContext) -> dict[str, Any]:
    """The config left when the rollout is done: the candidate alone, or with the previous
    champion's entity at 0% for the policy's ``rollback_window`` (``kept``, recorded in the lease
    when the rollout ends: an undo inside it is a route change, and the repair sweep retires the
    entity after it)."""
    shift, name = ctx.row["shift"], ctx.candidate["name"]
    window = seconds(ctx.env.strategy.rollback_window)
    champion = ctx.row.get("champion")
    kept = next((e["name"] for e in shift["served_entities"]
                 if e["name"] != name and str(e["entity_version"]) == champion), None)
    if not window or kept is None:
        return {"final": serving.only(shift, name)}
    return {"final": serving.split(serving.only(shift, kept), ctx.candidate, 100),
            "kept": {"version": champion, "entity": kept, "until": ctx.deps.clock() + window,
                     "model": ctx.model.name, "environment": ctx.row["environment"]}}


def _next_stage(ctx: StepContext, note: str, **fields: Any) -> Transition:
    nxt = ctx.row["stage"] + 1
    return go("shift" if nxt < len(ctx.stages) else "promote", note, stage=nxt, **fields)


def _limits(ctx: StepContext) -> runs.Limits:
    a = ctx.env.strategy.analysis
    return runs.Limits(count=a.count, failure_limit=a.failure_limit, inconclusive_limit=a.inconclusive_limit,
                       consecutive_error_limit=a.consecutive_error_limit)


def step_analyze(ctx: StepContext) -> Transition:
    """One measurement of the step's analysis run, over [shifted_at, now - delivery delay), and
    what its phase means for the rollout (Argo Rollouts,
    https://argoproj.github.io/argo-rollouts/features/analysis/): Successful → the next
    stage; Failed or Error → rollback; Inconclusive → pause, extend or fail as the policy says."""
    from shared.statements import StatementFailed

    a = ctx.env.strategy.analysis
    row, now = ctx.row, ctx.deps.clock()
    s, table = ctx.deps.settings, ctx.env.inference_table
    if table is None or not s.warehouse_id:
        return roll_back("analysis needs the inference table and DATABRICKS_WAREHOUSE_ID")
    number = row.get("runs", 0) if row.get("run") else row.get("runs", 0) + 1
    run = row.get("run") or runs.new_run(a.metrics)
    rid = analyses.key(row["id"], row["stage"], number)
    start, end = row["shifted_at"], now - _delivery_delay(ctx)
    cursor = row.get("analysis_cursor") or {}
    from shared.delivery.measure import measure

    try:
        figures = measure(ctx.w, s.warehouse_id, table.payload_table(ctx.endpoint), row["version"], row["champion"],
                          start, end, cursor, time.monotonic() + _STATEMENT_BUDGET)
    except StatementPending as pending:
        return wait(f"analysis query {pending.state}", analysis_cursor=cursor, run=run, runs=number)
    except (StatementFailed, ValueError) as exc:
        figures, error = None, f"{type(exc).__name__}: {exc}"
    else:
        error = None
    if figures is not None:
        for metric, verdict in verdicts(figures, a).items():
            run = runs.record(run, metric, verdict, None, now)
    else:
        for metric in a.metrics:
            run = runs.record(run, metric, None, error, now)
    run = runs.assess(run, _limits(ctx))
    phase = run["phase"]
    record = {"id": rid, "rollout": row["id"], "stage": row["stage"], "weight": row["weight"], "run": number,
              "version": row["version"], "champion": row["champion"], "phase": phase, "window": [start, end],
              "metrics": run["metrics"], "started_at": (analyses.get(ctx.deps.tables, ctx.endpoint, rid) or {}).get(
                  "started_at", now), "finished_at": None if phase == "Running" else now,
              "figures": _figures(figures)}
    analyses.put(ctx.deps.tables, ctx.endpoint, record)
    if phase != "Running":
        telemetry.analysis_ended(record, strategy=ctx.env.strategy.kind, model=row["model"],
                                 environment=row["environment"], endpoint=ctx.endpoint)
    summary = runs.summary(run)
    # The runs so far, newest last; bounded as the history is (a paused step may be resumed many times).
    done = [*(row.get("analyses") or []), {"id": rid, "stage": row["stage"], "weight": row["weight"],
                                           "phase": phase}][-_ANALYSES_KEPT:]
    base = {"run": run, "runs": number, "analysis_cursor": None}
    if phase == "Running":
        retry = _ERROR_RETRY_SECONDS if error else float(seconds(a.interval) if a.interval else _ERROR_RETRY_SECONDS)
        return later(retry, f"analysis {rid} measured: {summary}", **base)
    base.update(run=None, analyses=done)
    note = f"analysis {rid} at {row['weight']}%: {summary}"
    if phase == "Successful":
        if ctx.env.strategy.kind == "ab" and ctx.env.strategy.decision == "operator":
            return pause(note + "; waiting for an operator's promote or abort",
                         "A/B analysis Successful: promote or abort", now, awaiting="decision", **base)
        return _next_stage(ctx, note, **base)
    if phase in ("Failed", "Error"):
        kept = " (A/B: the champion is kept)" if ctx.env.strategy.kind == "ab" else ""
        return roll_back(f"analysis {summary}{kept}", **base)
    # Inconclusive: never a rollback or a promotion for lack of data.
    extensions = row.get("extensions", 0)
    if a.on_inconclusive == "fail":
        return roll_back(f"analysis {summary}", **base)
    if a.on_inconclusive == "extend" and extensions < a.max_extensions:
        bake = _stage(ctx)["bake"]
        return go("bake", note + f"; extending the step by {bake} s ({extensions + 1} of {a.max_extensions})",
                  **base, extensions=extensions + 1, bake_until=now + bake)
    return pause(note + "; paused: promote, resume (a new analysis) or abort", f"analysis {summary}", now, **base)


def _figures(figures: Any) -> dict[str, Any] | None:
    from dataclasses import asdict

    return asdict(figures) if figures is not None else None


def _lifecycle(ctx: StepContext) -> list[str]:
    a = ctx.env.aliases
    return [n for n in (a.challenger, *a.champion, a.production) if n]


def _tracked_elsewhere(ctx: StepContext) -> set[str]:
    """The aliases another environment of the model follows (``track: '@Alias'``)."""
    return {e.track_alias for name, e in ctx.model.environments.items()
            if name != ctx.row["environment"] and e.track_alias}


def step_promote(ctx: StepContext) -> Transition:
    """The candidate passed: the champion aliases (and, after an A/B test, the production one)
    move to it, then it takes all traffic. The aliases as they were before the rollout
    (``pointer``, read at resolve) are what a rollback restores. An alias that another
    environment tracks is that environment's signal to deploy, so it is ``held`` and moves only
    when this rollout is done (``_end``): a failure in the last shift or bake never reaches it."""
    version = ctx.row["version"]
    names = [*ctx.env.aliases.champion]
    if ctx.env.strategy.kind == "ab" and ctx.env.aliases.production:
        names.append(ctx.env.aliases.production)
    alone = serving.only(ctx.target, ctx.candidate["name"])
    view = ctx.read()
    finished = view.serves(alone) and not view.updating
    held = [] if finished else [a for a in names if a in _tracked_elsewhere(ctx)]
    names = [a for a in names if a not in held]
    moved = set_aliases(ctx.registry, ctx.model.name, version, names)
    said = (", ".join(f"@{a}" for a in names) or "no aliases") + " set"
    if held:
        said += f" ({', '.join(f'@{a}' for a in held)} once it is done: another environment tracks it)"
    challenger = ctx.env.aliases.challenger
    if challenger and aliases(ctx.registry, ctx.model.name).get(challenger) == version:
        delete_alias(ctx.registry, ctx.model.name, challenger)  # it is the champion now, no longer a challenger
        said += f", @{challenger} removed"
    if finished:
        return Transition(status="done", note=f"version {version} serves; {said}", set={"aliases_moved": moved,
                                                                                          "final": alone})
    return go("shift", f"version {version} passed; {said}; taking all traffic", aliases_moved=moved,
              held_aliases=held, stage=len(ctx.stages))


def _restore_aliases(ctx: StepContext) -> list[str]:
    """Aliases that point at the candidate go back to where they pointed before the rollout
    (the previous champion: the rollback pointer), or are removed if they pointed nowhere."""
    version = ctx.row["version"]
    before = ctx.row.get("pointer") or {}
    now = aliases(ctx.registry, ctx.model.name)
    changed = []
    for alias in _lifecycle(ctx):
        if now.get(alias) != version or before.get(alias) == version:
            continue
        if before.get(alias) and alias != ctx.env.aliases.challenger:
            ctx.registry.set_registered_model_alias(ctx.model.name, alias, before[alias])
            changed.append(f"@{alias} back to {before[alias]}")
        else:
            delete_alias(ctx.registry, ctx.model.name, alias)
            changed.append(f"@{alias} removed")
    return changed


def step_rollback(ctx: StepContext) -> Transition:
    previous = ctx.row.get("previous")
    failure = ctx.row.get("failure", "rollout failed")
    view = ctx.read()
    restored = _restore_aliases(ctx)
    if previous is None:
        return _remove_endpoint(ctx, view, failure)
    # A candidate that took traffic stays at 0% for abort_delay (Argo's abortScaleDownDelaySeconds).
    keep = bool(ctx.row.get("took_traffic")) and seconds(ctx.env.strategy.abort_delay) > 0
    cfg = serving.split(previous, ctx.candidate, 0) if keep else previous
    aliases_note = f"; {', '.join(restored)}" if restored else ""
    if view.serves(cfg) and not view.updating:
        return go("wait_rollback", "previous routes already serve" + aliases_note, restore=cfg)
    if view.updating:
        if ctx.waited_too_long():
            return fail(f"{failure}; the endpoint stayed busy, so the previous config was not restored")
        return wait("endpoint busy; waiting to restore the previous config")
    serving.write(ctx.w, ctx.endpoint, cfg, exists=view.exists)
    return go("wait_rollback", f"restoring the routes of versions {_listed(serving.served_versions(previous))}"
              + aliases_note, restore=cfg)


def _remove_endpoint(ctx: StepContext, view: serving.EndpointView, failure: str) -> Transition:
    """The endpoint served nothing before this rollout: delete it rather than leave the failed
    version answering (deleting while an update runs is allowed, and cancels it)."""
    if not view.exists:
        return _end(ctx, f"{failure}; nothing serves (the endpoint does not exist)")
    serving.delete(ctx.w, ctx.endpoint)
    return go("wait_rollback", "deleting the endpoint, which served nothing before this rollout")


def _end(ctx: StepContext, reason: str) -> Transition:
    """The rollout's end: the status it was heading for, and AI Gateway fallback back on if it was."""
    if ctx.row.get("fallback_on") and ctx.read().exists:
        serving.set_fallback(ctx.w, ctx.endpoint, True)
    status = ctx.row.get("ending") or "done"
    fields: dict[str, Any] = {}
    held = ctx.row.get("held_aliases") or []
    if status == "done" and held:
        # The aliases another environment tracks, held at promote (step_promote).
        moved = set_aliases(ctx.registry, ctx.model.name, ctx.row["version"], held)
        fields["aliases_moved"] = [*(ctx.row.get("aliases_moved") or []), *moved]
        reason += f"; {', '.join(f'@{a}' for a in held)} set"
    return Transition(status=status, reason="" if status == "done" else reason, note=reason, set=fields)


def step_wait_rollback(ctx: StepContext) -> Transition:
    failure = ctx.row.get("failure", "rollout failed")
    view = ctx.read()
    previous = ctx.row.get("previous")
    if previous is None:
        if view.exists:
            if ctx.waited_too_long():
                return fail(f"{failure}; deleting the endpoint did not finish")
            return wait("deleting the endpoint")
        return _end(ctx, f"{failure}; the endpoint served nothing before, so it was deleted")
    if view.updating:
        if ctx.waited_too_long():
            return fail(f"{failure}; restoring the previous config did not finish")
        return wait("restoring the previous config")
    restore = ctx.row["restore"]
    if not view.serves(restore):
        return fail(f"{failure}; restoring the previous config ended {view.config_update}: {view.message}")
    if restore != previous:
        delay = seconds(ctx.env.strategy.abort_delay)
        return go("retire", f"routes restored; version {ctx.row['version']} stays at 0% for {delay} s", final=previous,
                  retire_at=ctx.deps.clock() + delay)
    return _end(ctx, f"{failure} (rolled back to versions {_listed(serving.served_versions(previous))})")


def step_retire(ctx: StepContext) -> Transition:
    left = ctx.row["retire_at"] - ctx.deps.clock()
    if left > 0:
        return later(min(left, _MAX_AFTER), f"removing the unused entities in {left:.0f} s")
    final = ctx.row["final"]
    view = ctx.read()
    if view.serves(final) and not view.updating:
        return go("wait_retire", "unused entities already removed")
    if view.updating:
        if ctx.waited_too_long():
            return _end(ctx, f"{ctx.row.get('failure', 'rollout')}; the unused entities were left at 0% (the endpoint "
                        "stayed busy)")
        return wait("endpoint busy; waiting to remove the unused entities")
    gone = [str(e["entity_version"]) for e in view.active["served_entities"]] if view.active else []
    serving.write(ctx.w, ctx.endpoint, final, exists=True)
    kept = serving.served_versions(final)
    return go("wait_retire", f"removing versions {_listed(sorted(set(gone) - set(kept)))}; keeping {_listed(kept)}")


def step_wait_retire(ctx: StepContext) -> Transition:
    view = ctx.read()
    final = ctx.row["final"]
    if view.updating:
        if ctx.waited_too_long():
            return _end(ctx, "removing the unused entities did not finish")
        return wait("removing the unused entities")
    served = serving.served_versions(final)
    if ctx.row.get("ending"):
        return _end(ctx, f"{ctx.row.get('failure', 'rollout failed')} (rolled back to versions {_listed(served)})")
    if not view.serves(final):
        return _end(ctx, f"removing the unused entities ended {view.config_update}: {view.message}")
    said = ", ".join(f"@{a}" for a in ctx.env.aliases.champion) or "no aliases"
    return _end(ctx, f"version {ctx.row['version']} serves alone; {said} on it")


STEPS: dict[str, Callable[[StepContext], Transition]] = {
    "resolve": step_resolve,
    "validate": step_validate,
    "features": step_features,
    "deploy": step_deploy,
    "wait_deploy": step_wait_deploy,
    "smoke": step_smoke,
    "shift": step_shift,
    "wait_shift": step_wait_shift,
    "bake": step_bake,
    "analyze": step_analyze,
    "promote": step_promote,
    "rollback": step_rollback,
    "wait_rollback": step_wait_rollback,
    "retire": step_retire,
    "wait_retire": step_wait_retire,
}


def message(row: dict[str, Any], seq: int) -> dict[str, Any]:
    return {"rollout": row["id"], "endpoint": row["endpoint"], "seq": seq, "cid": row.get("cid")}


def kick(deps: Deps, endpoint: str, rid: str) -> None:
    """Send a rollout's current step: a hint, harmless when repeated (only the worker that claims
    the step runs it; a message for a step claimed by another, or already past, is dropped)."""
    entity = rollouts.get(deps.tables, endpoint, rid)
    if entity and entity.data["status"] not in rollouts.TERMINAL:
        enqueue(deps.queues, ROLLOUT_QUEUE, message(entity.data, entity.data["seq"]))


def start(deps: Deps, *, model: str, environment: str, version: str | None, alias: str | None,
          origin: dict[str, str], cid: str, rid: str | None = None, join: bool = False, purpose: str | None = None,
          ) -> tuple[dict[str, Any], bool]:
    """Create the rollout and take or queue for the endpoint's lease. Idempotent per ``rid``
    (default: per origin, so a retried command never starts twice). With ``join``, a live
    rollout of the same version is joined instead (reconcile). ``purpose``: ``undo`` (a version
    still on the endpoint at 0% takes the traffic back without a new deploy) or ``retire_kept``
    (the rollback window is over: the kept entity goes). Returns the rollout and whether it is
    this origin's own (False: another origin had started it)."""
    mp = deps.policy().model(model)
    env = mp.environments.get(environment) if mp else None
    if mp is None or env is None:
        raise PolicyError(f"model {model!r} has no environment {environment!r} in the policy")
    rid = rid or rollouts.rollout_id(origin["kind"], origin["id"], environment)
    claim = rollouts.claim(deps.tables, env.endpoint, rid, {
        "model": model, "environment": environment, "version": version,
        "requested": {"version": version, "alias": alias, **({purpose: True} if purpose else {})},
        "origin": origin, "cid": cid,
    }, now=deps.clock(), join_version=version if join else None)
    row = claim.rollout
    if claim.superseded:
        after_end(deps, claim.superseded, None)
    step("rollout.start", rollout=row["id"], model=model, environment=environment, endpoint=env.endpoint,
         version=version, alias=alias, lease="active" if claim.active else "queued", new=claim.created)
    if claim.active and row["status"] == "pending":
        kick(deps, env.endpoint, row["id"])
    return row, row.get("origin") == origin


def after_end(deps: Deps, row: dict[str, Any], holder: str | None) -> None:
    """What follows a rollout's end, safe to repeat: wake the lease's new holder if it has not
    started, and close the record that asked for the rollout."""
    if holder and holder != row["id"]:
        nxt = rollouts.get(deps.tables, row["endpoint"], holder)
        if nxt is not None and nxt.data["status"] == "pending":
            kick(deps, row["endpoint"], holder)
    _close_origin(deps, row, row["status"], row.get("reason") or "")
    if row.get("caused_by"):
        monitor_store.update_decision(deps.tables, row["endpoint"], row["caused_by"],
                                      rollout={"id": row["id"], "version": row.get("version"), "status": row["status"]})


def _close_origin(deps: Deps, row: dict[str, Any], status: str, reason: str) -> None:
    origin = row.get("origin") or {}
    if origin.get("kind") and origin.get("id"):
        # The record that asked for the version did not get it when an operator stopped it.
        status = "failed" if status in rollouts.STOPPED else status
        journal.update(deps.tables, origin["kind"], origin["id"], status, reason=reason, rollout=row["id"],
                       version=row.get("version"))


def handle_message(deps: Deps, body: bytes, message_id: str) -> None:
    """Entry point of the rollout queue trigger."""
    try:
        msg = json.loads(body)
        endpoint, rid, seq = str(msg["endpoint"]), str(msg["rollout"]), int(msg["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        journal.record(deps.tables, "command", message_id, "rejected", queue=ROLLOUT_QUEUE,
                       reason=f"not a rollout step message: {exc}", excerpt=journal.excerpt(body))
        step("rollout.rejected", logging.WARNING, message=message_id, reason=str(exc))
        return
    with correlated(str(msg.get("cid") or message_id)):
        _run(deps, endpoint, rid, seq, message_id)


def _run(deps: Deps, endpoint: str, rid: str, seq: int, message_id: str) -> None:
    entity = rollouts.get(deps.tables, endpoint, rid)
    if entity is None:
        step("rollout.unknown", logging.WARNING, rollout=rid)
        return
    row = entity.data
    if row["status"] in rollouts.TERMINAL:
        # A message of an ended rollout: finish what its end may not have done (a crash, a failed enqueue).
        step("rollout.duplicate", rollout=rid, seq=seq, current=row["seq"], status=row["status"])
        after_end(deps, row, rollouts.lease(deps.tables, endpoint).get("active"))
        return
    if seq != row["seq"]:
        # A step already past (a duplicate, a late one), or one whose sender never committed:
        # messages are sent after their commit, and an overdue step is re-sent by the sweep.
        step("rollout.duplicate", rollout=rid, seq=seq, current=row["seq"], status=row["status"])
        return
    if row.get("paused"):
        step("rollout.paused", rollout=rid, step=row["step"], reason=row["paused"].get("reason"))
        return
    lease = rollouts.lease(deps.tables, endpoint)
    if lease.get("active") != rid:
        step("rollout.not_leased", rollout=rid, active=lease.get("active"))
        return
    # The holder is the message: its redelivery (the worker died, or storage failed under it)
    # takes its own claim back at once rather than waiting for it to expire.
    claimed = rollouts.claim_step(deps.tables, entity, holder=message_id, now=deps.clock(),
                                  seconds=deps.settings.claim_seconds)
    if claimed is None:
        step("rollout.claimed_elsewhere", rollout=rid, seq=seq, step=row["step"])
        return
    # Superseding is this step's outcome too: never under a step another worker is running.
    if row["step"] in _SUPERSEDABLE and lease.get("queued"):
        _finish(deps, claimed, Transition(status="superseded", reason=f"superseded by newer rollout {lease['queued']}"))
        return
    # One span per step run: the step's Databricks and registry calls, then its commit.
    with telemetry.span(f"rollout.{row['step']}", rollout=rid, endpoint=endpoint, model=row["model"],
                        environment=row["environment"], version=row.get("version"), seq=seq) as span:
        tr = _execute(deps, claimed.data)
        span.set(status=tr.status, next=tr.step, wait=tr.wait, note=tr.note)
        _apply(deps, claimed, tr)


def _execute(deps: Deps, row: dict[str, Any]) -> Transition:
    try:
        mp = deps.policy().model(row["model"])
        env = mp.environments.get(row["environment"]) if mp else None
        if mp is None or env is None:
            return fail(f"model {row['model']!r} environment {row['environment']!r} is no longer in the policy")
        return STEPS[row["step"]](StepContext(deps, row, mp, env))
    except Exception as exc:  # a step's failure is the rollout's to handle, never a lost message
        note_denied(deps.tables, exc, f"rollout step {row['step']} on {row.get('endpoint')}", deps.clock())
        errors = row.get("errors", 0) + 1
        reason = f"{row['step']}: {type(exc).__name__}: {exc}"
        step("rollout.step_error", logging.WARNING, rollout=row["id"], step=row["step"], errors=errors,
             error=reason)
        if errors < _MAX_STEP_ERRORS:
            return Transition(wait=True, note=reason, set={"errors": errors})
        if row["step"] in _ON_ENDPOINT:
            return roll_back(reason, errors=0)
        return fail(reason)


def _backoff(deps: Deps, attempt: int) -> float:
    s = deps.settings
    return min(s.backoff_cap_seconds, s.backoff_base_seconds * 2 ** max(0, attempt - 1))


def _apply(deps: Deps, entity: Entity, tr: Transition) -> None:
    row = entity.data
    if tr.status != "running":
        _finish(deps, entity, tr)
        return
    now = deps.clock()
    if tr.wait:
        attempt = row.get("attempt", 0) + 1
        delay = _backoff(deps, attempt)
        changes = {"attempt": attempt, "wait_started": row.get("wait_started") or now}
    elif tr.after is not None or tr.paused:
        delay, changes = tr.after or 0.0, {"attempt": 0, "wait_started": None}
    else:
        delay, changes = 0.0, {"attempt": 0, "wait_started": None, "errors": 0, "step": tr.step}
    changes.update(tr.set, status="running", due_at=None if tr.paused else now + delay)
    if tr.paused:
        changes["paused"] = tr.paused
    try:
        rollouts.advance(deps.tables, entity, tr.note, now=now, **changes)
    except ConcurrencyConflict:
        # The claim expired and another worker took the step, or an operator moved the rollout.
        step("rollout.lost_race", rollout=row["id"], step=row["step"])
        return
    if not tr.paused:
        enqueue(deps.queues, ROLLOUT_QUEUE, message(row, row["seq"] + 1), delay=delay)
    step("rollout.step", rollout=row["id"], step=row["step"], next=changes.get("step", row["step"]),
         version=row.get("version"), note=tr.note, **({"delay_s": round(delay, 2)} if tr.wait else {}))


def _finish(deps: Deps, entity: Entity, tr: Transition) -> None:
    """End a rollout: its terminal state and the lease hand-over commit together, then the
    idempotent after-effects run (and run again on any redelivery)."""
    row = entity.data
    reason = tr.reason or tr.note
    ended = rollouts.finish(deps.tables, entity, tr.note or reason, now=deps.clock(), status=tr.status,
                            reason=reason, **tr.set)
    if ended is None:
        step("rollout.lost_race", rollout=row["id"], step=row["step"])
        return
    level = logging.INFO if tr.status == "done" else logging.WARNING
    step(f"rollout.{tr.status}", level, rollout=row["id"], model=row["model"], version=row.get("version"),
         endpoint=row["endpoint"], reason=reason)
    after_end(deps, ended.rollout, ended.holder)
