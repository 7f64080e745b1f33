"""Monitoring reactions: the ``monitor`` timer, and the ``check_drift`` and ``retrain`` commands.

The timer (``%REACTOR_MONITOR_SCHEDULE%``) only submits a recorded ``check_drift`` per
environment when a window ends, and again when its labels are due, so a tick costs a record and a
message, and two ticks in one window do the work once. The check itself
(``shared.monitoring.check``) runs as a command: recorded, claimed, retried with backoff, handed on
by the repair sweep, never waiting on a statement.

A decision that calls for retraining submits a ``retrain`` command, recorded before it is sent
(docs/architecture.md principle 5). ``retrain`` launches the job with ``jobs.run_now`` and an idempotency
token derived from (model, environment, serving version, triggering window), so however often
the decision or the command is repeated, Databricks launches one run ("exactly one run is
launched with that idempotency token", Databricks REST API, "Trigger a new job run",
https://docs.databricks.com/api/workspace/jobs/runnow); never while a run of the job is active
(``list_runs(active_only=True)``); then follows the run by re-enqueueing until it is terminal
(TERMINATED, SKIPPED or INTERNAL_ERROR) and records its outcome: a
run that did not succeed is a recorded alert. The version the job registers carries the tag
``reactor.decision`` and comes back through the webhook or the watcher like any other.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from typing import Any

from handlers.deps import Deps
from shared import journal, rollouts, serving, telemetry
from shared.commands import CheckDrift, Retrain
from shared.log import correlated, step
from shared.monitoring import check as checks
from shared.monitoring import store
from shared.monitoring.policy import seconds
from shared.monitoring.relations import Watched
from shared.policy import Environment, ModelPolicy, PolicyError

_TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}
_STEP_BUDGET_SECONDS = 20.0
# Parameters the app fills in when the job defines them (JobSettings.parameters).
_OFFERED = ("decision", "model", "environment", "version", "since", "payload_table", "label_table", "label_key",
            "label_column", "warehouse_id")


_LAST_TICK = "tick"  # row of the monitor table: the keys of the last checks the timer sent


def tick(deps: Deps) -> dict[str, int]:
    """Submit a recorded ``check_drift`` for every monitored environment, once per window end."""
    from handlers.commands import submit

    sent = 0
    now = deps.clock()
    cid = f"monitor-{uuid.uuid4()}"
    with correlated(cid):
        for mp in deps.policy().models:
            for name, env in mp.environments.items():
                if env.monitoring is None:
                    continue
                m = env.monitoring
                W = m.window_seconds
                # Once when a window ends (its drift and health), and once when its labels are due
                # (its performance): each key is recorded, so later ticks of the window add nothing.
                marks = [f"{int(math.floor(now / W) * W)}"]
                if m.labels is not None:
                    marks.append(f"{int(math.floor((now - seconds(m.labels.delay)) / W) * W)}.labels")
                # A check judges every window not judged yet, so while the last one still runs a
                # second would only run the same statements beside it: the next tick sends it.
                if _checking(deps, env.endpoint):
                    continue
                keys = [journal.key("monitor", f"{env.endpoint}.{mark}") for mark in marks]
                new = [k for k in keys if submit(deps, k, {"command": "check_drift", "model": mp.name,
                                                           "environment": name}, cid)]
                if new:
                    deps.tables.upsert(store.MONITOR, env.endpoint, _LAST_TICK, {"keys": new})
                    sent += len(new)
        step("monitor.tick", submitted=sent)
    return {"submitted": sent}


def _checking(deps: Deps, endpoint: str) -> bool:
    """The last check the timer sent for this endpoint is still running."""
    last = deps.tables.get(store.MONITOR, endpoint, _LAST_TICK)
    recs = [journal.get(deps.tables, "command", key) for key in (last.data["keys"] if last else [])]
    return any(rec is not None and rec.get("status") not in journal.TERMINAL for rec in recs)


def _environment(deps: Deps, model: str, environment: str) -> tuple[ModelPolicy, Environment]:
    mp = deps.policy().model(model)
    if mp is None:
        raise PolicyError(f"model {model!r} is not in the policy")
    env = mp.environments.get(environment)
    if env is None:
        raise PolicyError(f"model {model!r} has no environment {environment!r} in the policy")
    return mp, env


def _done(deps: Deps, endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's latest rollouts that ended with their version serving, oldest first: kept in
    its lease (shared.rollouts.served), so a check reads one row, not the rollout history."""
    return rollouts.served(deps.tables, endpoint)


def _serving_since(deps: Deps, endpoint: str) -> Any:
    done = _done(deps, endpoint)

    def since(version: str) -> float | None:
        ends = [r.get("finished_at") or r.get("updated_at") for r in done if r.get("version") == version]
        return max((float(e) for e in ends if e is not None), default=None)

    return since


def _signature_columns(deps: Deps, model: str, categorical: set[str]) -> Any:
    """The model signature's inputs (MLmodel ``signature.inputs``): strings and booleans are
    categorical, numbers numeric (name a column in ``monitoring.categorical`` to compare IDs as
    categories)."""

    def columns(version: str) -> list[Watched]:
        from shared.model_signature import signature_inputs

        try:
            specs = signature_inputs(deps.registry(), deps.settings.registry_uri, model, version)
        except Exception as exc:
            raise checks.CheckFailed(f"cannot read the signature of {model} version {version} ({exc}): "
                                     "list the watched columns in monitoring.columns") from exc
        if specs is None:
            raise checks.CheckFailed(f"{model} version {version} has no signature: set monitoring.columns")
        return [Watched(spec["name"], "categorical" if str(spec.get("type")) in ("string", "boolean")
                        or spec["name"] in categorical else "numeric") for spec in specs]

    return columns


def check_drift(deps: Deps, key: str, rec: dict[str, Any], cmd: CheckDrift) -> tuple[str, list[str], dict[str, Any]]:
    """One pass; returns (``done`` | ``wait``, outcome, cursor)."""
    mp, env = _environment(deps, cmd.model, cmd.environment)
    if env.monitoring is None:
        raise PolicyError(f"{cmd.model} {cmd.environment} has no monitoring in the policy")
    if not deps.settings.warehouse_id:
        raise PolicyError("DATABRICKS_WAREHOUSE_ID is not set: monitoring runs its SQL on a SQL warehouse")
    w = deps.workspace()
    view = serving.read(w, env.endpoint)
    versions = serving.served_versions(view.active)
    if not versions:
        return "done", [f"{cmd.environment}: nothing serves on {env.endpoint}"], {}
    cursor: dict[str, Any] = dict(rec.get("cursor") or {})
    ctx = checks.Context(w=w, warehouse_id=deps.settings.warehouse_id, tables=deps.tables, model=mp.name,
                         environment=cmd.environment, env=env, cursor=cursor, now=deps.clock(),
                         deadline=time.monotonic() + _STEP_BUDGET_SECONDS,
                         columns_of=_signature_columns(deps, mp.name, set(env.monitoring.categorical)),
                         serving_since=_serving_since(deps, env.endpoint))
    explicit = (cmd.window.start.timestamp(), cmd.window.end.timestamp()) if cmd.window else None
    outcome: list[str] = []
    pending = False
    for version in versions:
        try:
            decision = checks.check_version(ctx, version, explicit)
        except checks.Pending as exc:
            outcome.append(f"version {version}: waiting for {exc}")
            pending = True
            continue
        if decision is None:
            outcome.append(f"version {version}: no new window to judge"
                           + ("" if store.baseline(deps.tables, env.endpoint, version) else
                              f" (no baseline yet: waiting for a window with {env.monitoring.decision.min_rows} rows)"))
            continue
        outcome.append(f"version {version}: {decision['verdict']}: {decision['reason']} (decision {decision['id']})")
        step("monitor.decision", model=mp.name, environment=cmd.environment, version=version,
             verdict=decision["verdict"], decision=decision["id"],
             figures={f["check"]: f["value"] for f in decision["figures"]})
        if decision.get("act"):
            outcome.append(_act(deps, mp, cmd.environment, env, decision))
    return ("wait" if pending else "done"), outcome, cursor if pending else {}


def record_failure(deps: Deps, cmd: CheckDrift, reason: str) -> None:
    """A check that could not be made (a missing table, a failing statement) is a decision too,
    listed with the others: nothing is decided on failed data, and nobody is left guessing."""
    mp = deps.policy().model(cmd.model)
    env = mp.environments.get(cmd.environment) if mp else None
    if env is None:
        return
    store.record_decision(deps.tables, env.endpoint, {
        "model": cmd.model, "environment": cmd.environment, "version": None, "verdict": "failed", "reason": reason,
        "action": None, "windows": [], "figures": [], "window": None}, now=deps.clock())
    step("monitor.check_failed", logging.ERROR, model=cmd.model, environment=cmd.environment, reason=reason)


def _act(deps: Deps, mp: ModelPolicy, environment: str, env: Environment, decision: dict[str, Any]) -> str:
    from handlers.commands import submit

    m = env.monitoring
    assert m is not None
    action, did = m.decision.action, decision["id"]
    if action == "rollback":
        previous = _previous_version(deps, env.endpoint, decision["version"], seconds(m.decision.rollback_within),
                                     deps.clock())
        if previous is None:
            action = "alert"
            store.update_decision(deps.tables, env.endpoint, did, action="alert",
                                  note="no previous version to roll back to, or the version has served longer than "
                                  "rollback_within: alert only")
        else:
            submit(deps, journal.key("decision", f"{did}.rollback"), {
                "command": "deploy", "model": mp.name, "environment": environment, "version": previous}, did)
            store.update_decision(deps.tables, env.endpoint, did, action="rollback", rollback_to=previous)
            return f"rolling back to version {previous}"
    if action == "alert":
        step("monitor.alert", logging.WARNING, model=mp.name, environment=environment, decision=did,
             reason=decision["reason"])
        return "alert recorded"
    submit(deps, journal.key("decision", f"{did}.retrain"), {
        "command": "retrain", "model": mp.name, "environment": environment, "decision": did,
        "version": decision["version"], "window_start": decision["window"]["start"],
        "reason": f"decision {did}: {decision['reason']}"[:500]}, did)
    return "retraining requested"


def _previous_version(deps: Deps, endpoint: str, version: str, within: float, now: float) -> str | None:
    """The version that served before ``version``, if ``version`` began serving within ``within``."""
    done = _done(deps, endpoint)
    mine = [r for r in done if r.get("version") == version]
    if not mine or now - float(mine[-1].get("finished_at") or 0) > within:
        return None
    before = [r for r in done if r.get("version") != version and r["created_at"] < mine[-1]["created_at"]]
    return before[-1].get("version") if before else None


def idempotency_token(job_id: int, model: str, environment: str, version: str | None, window_start: float | None,
                      fallback: str) -> str:
    """≤ 64 characters (as ``run_now`` takes it), the same for the same (job, model, environment, version,
    window); without a window (a ``retrain`` from another system), the command's record key
    stands for the window. Tokens are looked up across the workspace, hence the job in it."""
    basis = f"{job_id}\n{model}\n{environment}\n" + (f"{version}\n{window_start}" if window_start is not None
                                                     else f"command\n{fallback}")
    return hashlib.sha256(basis.encode()).hexdigest()


def retrain(deps: Deps, key: str, rec: dict[str, Any], cmd: Retrain) -> tuple[str, list[str], dict[str, Any]]:
    """One step of ``retrain``: launch, or look at the run again. Returns (``done`` | ``wait`` |
    ``failed``, outcome, fields to keep in the record)."""
    mp, env = _environment(deps, cmd.model, cmd.environment)
    job = env.retraining
    if job is None:
        raise PolicyError(f"{cmd.model} {cmd.environment} has no retraining job in the policy")
    w = deps.workspace()
    did = cmd.decision
    run_id = rec.get("run_id")

    def counted(result: str) -> None:
        telemetry.retraining_result(result, model=cmd.model, environment=cmd.environment, endpoint=env.endpoint)

    if run_id is None:
        token = rec.get("launch_key")
        if token is None:
            verdict = _may_launch(deps, env, cmd, key)
            if verdict:
                why = verdict.split(":")[0]
                _note(deps, env.endpoint, did, verdict=why, action=None, note=verdict)
                counted(why)
                return "done", [verdict], {}
            active = list(w.jobs.list_runs(job_id=job.job_id, active_only=True))
            if active:
                text = f"run_in_flight: run {active[0].run_id} of job {job.job_id} is active; not launching another"
                _note(deps, env.endpoint, did, verdict="run_in_flight", action=None, note=text)
                counted("run_in_flight")
                return "done", [text], {}
            token = idempotency_token(job.job_id, cmd.model, cmd.environment, cmd.version, cmd.window_start, key)
            # Kept before run_now: a retry after a crash sends the same token, and Databricks
            # answers with the run it already launched. Not named "token": records are redacted
            # by field name, and a masked token would launch a second run.
            journal.update(deps.tables, "command", key, "running", launch_key=token)
        params = _parameters(deps, w, job.job_id, job.parameters, mp, cmd, env)
        run = w.jobs.run_now(job.job_id, job_parameters=params, idempotency_token=token)
        run_id = run.run_id
        _note(deps, env.endpoint, did, run={"job_id": job.job_id, "run_id": run_id, "state": "launched"})
        counted("launched")
        return "wait", [f"launched run {run_id} of job {job.job_id}"], {"run_id": run_id, "launch_key": token}
    got = w.jobs.get_run(run_id)
    state = got.state
    life = state.life_cycle_state.value if state and state.life_cycle_state else "UNKNOWN"
    if life not in _TERMINAL:
        return "wait", [f"run {run_id} is {life}"], {"run_id": run_id}
    result = state.result_state.value if state and state.result_state else life
    message = (state.state_message or "") if state else ""
    run_info = {"job_id": job.job_id, "run_id": run_id, "state": life, "result": result, "message": message[:500],
                "url": got.run_page_url}
    counted(result)
    if result == "SUCCESS":
        _note(deps, env.endpoint, did, run=run_info)
        return "done", [f"run {run_id} succeeded: the version it registers is rolled out when the registry announces "
                        "it"], {"run_id": run_id}
    _note(deps, env.endpoint, did, run=run_info, alert=f"retraining run {run_id} ended {result}: {message}"[:600])
    step("monitor.retraining_failed", logging.ERROR, model=cmd.model, environment=cmd.environment, run=run_id,
         result=result, message=message)
    return "failed", [f"run {run_id} ended {life}/{result}: {message}"], {"run_id": run_id}


def _may_launch(deps: Deps, env: Environment, cmd: Retrain, key: str) -> str | None:
    """Why not to launch (cooldown), or None. The monitor's own decision took the cooldown
    already when it decided; any other request takes it here, in its own name (its record key),
    so that a retry of the same command finds it taken by itself."""
    cooldown = seconds(env.monitoring.decision.cooldown) if env.monitoring else 0.0
    st = store.state(deps.tables, env.endpoint)
    did = cmd.decision or f"command {key}"
    if st.get("last_decision") == did:
        return None
    if store.take_action(deps.tables, env.endpoint, did, now=deps.clock(), cooldown_seconds=cooldown):
        return None
    ago = deps.clock() - float(st.get("last_action_at") or 0)
    return f"cooldown: the last action was {ago:.0f} s ago; the cooldown is {cooldown:.0f} s"


def _parameters(deps: Deps, w: Any, job_id: int, fixed: dict[str, str], mp: ModelPolicy, cmd: Retrain,
                env: Environment) -> dict[str, str]:
    """The policy's parameters plus those the job defines among ``_OFFERED``."""
    defined = {p.name for p in (w.jobs.get(job_id).settings.parameters or [])}
    m = env.monitoring
    since = None
    if cmd.window_start is not None:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cmd.window_start))
    offered = {
        "decision": cmd.decision or "", "model": mp.name, "environment": cmd.environment, "version": cmd.version or "",
        "since": since or "", "warehouse_id": deps.settings.warehouse_id or "",
        "payload_table": env.inference_table.payload_table(env.endpoint) if env.inference_table else "",
        "label_table": m.labels.table if m and m.labels else "", "label_key": m.labels.key if m and m.labels else "",
        "label_column": m.labels.column if m and m.labels else "",
    }
    return {**{k: v for k, v in offered.items() if k in defined and v}, **fixed}


def _note(deps: Deps, endpoint: str, decision: str | None, **fields: Any) -> None:
    if decision:
        store.update_decision(deps.tables, endpoint, decision, **fields)
