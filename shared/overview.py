"""The status summary: per model and environment, what serves, what is rolling out, what the
monitor last said. Used by ``GET /api/status``, the operators' CLI (``reactor status``) and the
status page, so all three say the same.

Built from stored state only, with a bounded number of reads per endpoint whatever the traffic
or the history (README "Progressive delivery"): the endpoint's lease row, the rollout it names
(the active one, else the last one that ended: ``last`` in the lease, shared.rollouts.finish),
and the newest monitor decision (the ``decisions`` partition is newest first). Nothing here calls
Databricks or the registry: the aliases are those the rollout's record says it left, which is
what the app did, not what someone may have changed by hand since.

:func:`status` returns one plain dict per environment of every model in the policy, in policy
order, JSON-able:

- ``model``, ``environment``, ``endpoint``;
- ``serving``: the served entities and their traffic now, ``[{"entity", "version", "traffic"}]``
  (empty: nothing serves), read from the active rollout's config for its step, else the lease's
  last good config;
- ``serving_version``: the version the last successful rollout left serving (the champion);
  ``previous_champion``: the rollback pointer;
- ``aliases``: the lifecycle aliases (challenger, champion, production) → version;
- ``rollout``: the active or last rollout (:func:`rollout_summary`) or None; ``queued``: the
  rollout waiting for the lease, ``{"id", "version"}``, or None;
- ``hold``: the environment's hold (``version``, ``by``, ``reason``, ``since``; shared.rollouts L7)
  or None;
- ``failed_versions``: version → why its last rollout failed (reconcile does not retry them);
- ``monitor``: the newest decision (``id``, ``at``, ``version``, ``verdict``, ``reason``,
  ``action``, ``window``, ``figures`` as stored: ``check``, ``value``, ``threshold``,
  ``direction``, ``rows``, ``verdict``) or None;
- ``retraining``: the last action the monitor (or a ``retrain`` sent by someone) took, or None
  (:func:`retraining`): ``action``, ``at``, ``cooldown_until`` (no other action before it),
  ``decision`` (its id) or ``record`` (the ``retrain`` command's journal key), ``run`` (the
  retraining run: ``run_id``, ``state``, ``result``, ``message``), ``version`` (what it
  registered) and ``rollout`` (that version's rollout: ``id``, ``version``, ``status``);
- ``attention``: what an operator should look at, in words (a hold, a paused rollout, a last
  rollout that failed or was stopped, drift, a failed check, a retraining run that failed); empty
  when all is well.
"""

from __future__ import annotations

from typing import Any

from shared import journal, rollouts, serving
from shared.monitoring import store as monitor_store
from shared.monitoring.policy import seconds
from shared.policy import Environment, Policy
from shared.tables import TableService

# The row field holding the config the endpoint serves, by step (handlers/rollout.py): before
# ``deploy`` committed, and after the end, the lease's last good config serves.
_CONFIG_OF_STEP = {
    "wait_deploy": ("target",), "smoke": ("target",),
    "shift": ("shift", "target"), "wait_shift": ("shift", "target"), "bake": ("shift", "target"),
    "analyze": ("shift", "target"), "promote": ("shift", "target"), "rollback": ("shift", "target"),
    "wait_rollback": ("restore",), "retire": ("restore",), "wait_retire": ("final",),
}
# Verdicts of a decision that found drift (shared.monitoring.decide): acted on, or held back by
# the cooldown or a retraining run still going.
DRIFT_VERDICTS = frozenset({"violation", "cooldown", "run_in_flight"})
_ROLLOUT_FIELDS = ("id", "version", "model", "status", "step", "stage", "weight", "champion", "reason", "failure",
                   "caused_by", "created_at", "updated_at", "finished_at")
_DECISION_FIELDS = ("id", "at", "version", "verdict", "reason", "action", "window", "figures", "run", "rollout",
                    "rollback_to", "note", "alert")
_RUN_FIELDS = ("run_id", "state", "result", "message")


def status(tables: TableService, policy: Policy) -> list[dict[str, Any]]:
    """One summary per model and environment of ``policy`` (module docstring)."""
    return [environment_status(tables, model.name, name, env)
            for model in policy.models for name, env in model.environments.items()]


def environment_status(tables: TableService, model: str, environment: str, env: Environment) -> dict[str, Any]:
    """The summary of one environment: at most five point reads and one page of one row."""
    lease = rollouts.lease(tables, env.endpoint)
    rid = lease.get("active") or lease.get("last")
    entity = rollouts.get(tables, env.endpoint, rid) if rid else None
    row = entity.data if entity else None
    got = monitor_store.decisions_page(tables, env.endpoint, limit=1, continuation=None)
    decision = got.entities[0].data if got.entities else None
    summary = rollout_summary(row) if row else None
    entry: dict[str, Any] = {
        "model": model, "environment": environment, "endpoint": env.endpoint,
        "serving": served(current_config(row, lease)),
        "serving_version": lease.get("serving_version"),
        "previous_champion": lease.get("previous_champion"),
        "aliases": aliases(row, env),
        "rollout": summary,
        "queued": {"id": lease["queued"], "version": lease.get("queued_version")} if lease.get("queued") else None,
        "hold": lease.get("hold"),
        "failed_versions": dict(lease.get("failed") or {}),
        "monitor": {k: decision.get(k) for k in _DECISION_FIELDS} if decision else None,
        "retraining": retraining(tables, env, summary),
    }
    entry["attention"] = attention(entry)
    return entry


def retraining(tables: TableService, env: Environment, rollout: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last action taken on the environment, as the monitor's ``state`` row names it
    (shared.monitoring.store: the cooldown's own record), with two point reads at most: the
    decision that took it, or the journal record of a ``retrain`` someone sent
    (handlers/monitor.py takes the cooldown as ``command <record key>``). The version a run
    registered is known from its rollout, which names the decision (``caused_by``): the active or
    last rollout while it is the one, else what the decision recorded when that rollout ended."""
    st = monitor_store.state(tables, env.endpoint)
    last, at = st.get("last_decision"), st.get("last_action_at")
    if not last or at is None:
        return None
    cooldown = seconds(env.monitoring.decision.cooldown) if env.monitoring else 0.0
    out: dict[str, Any] = {"action": None, "at": at, "cooldown_until": float(at) + cooldown, "decision": None,
                           "record": None, "run": None, "version": None, "rollout": None}
    if last.startswith("command "):
        key = last.removeprefix("command ")
        rec = journal.get(tables, "command", key) or {}
        outcome = rec.get("outcome")
        out.update(action="retrain", record=key)
        if rec:
            out["run"] = {"run_id": rec.get("run_id"), "state": rec.get("status"), "result": None,
                          "message": "; ".join(outcome) if isinstance(outcome, list) else outcome or rec.get("reason")}
        return out
    d = monitor_store.decision(tables, env.endpoint, last) or {}
    out.update(action=d.get("action"), decision=last,
               run={k: d["run"].get(k) for k in _RUN_FIELDS} if d.get("run") else None)
    ended = d.get("rollout")
    if rollout and rollout.get("caused_by") == last:
        ended = {k: rollout.get(k) for k in ("id", "version", "status")}
    if ended:
        out.update(version=ended.get("version"), rollout=ended)
    return out


def rollout_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A rollout row reduced to what a summary shows; ``paused`` is the pause's reason or None."""
    out = {k: row.get(k) for k in _ROLLOUT_FIELDS}
    out["paused"] = (row.get("paused") or {}).get("reason") if row.get("paused") else None
    return out


def current_config(row: dict[str, Any] | None, lease: dict[str, Any]) -> dict[str, Any] | None:
    """The endpoint config that serves now, as the stored state says (``_CONFIG_OF_STEP``)."""
    if row is not None and row.get("status") not in rollouts.TERMINAL:
        for name in _CONFIG_OF_STEP.get(row.get("step", ""), ()):
            if row.get(name):
                return row[name]
        if row.get("step") in _CONFIG_OF_STEP:
            return None  # wait_rollback of an endpoint the rollout created: it is being deleted
    return lease.get("last_good")


def served(config: dict[str, Any] | None) -> list[dict[str, Any]]:
    """``[{"entity", "version", "traffic"}]`` of a config, in its order."""
    shares = serving.routes(config)
    return [{"entity": e["name"], "version": str(e.get("entity_version")), "traffic": shares.get(e["name"], 0)}
            for e in (config or {}).get("served_entities", [])]


def aliases(row: dict[str, Any] | None, env: Environment) -> dict[str, str]:
    """The lifecycle aliases as the rollout left them (handlers/rollout.py): before it, as it
    recorded them (``pointer``); ``@Challenger`` on the candidate once it took traffic; the
    champion aliases (and after an A/B test the production one) on it once it passed, the
    challenger then removed; after a failure or a stop, back to where they were."""
    if row is None:
        return {}
    out = {name: str(v) for name, v in (row.get("pointer") or {}).items() if v}
    version, status, names = row.get("version"), row.get("status"), env.aliases
    if version is None:
        return out
    promoted = row.get("aliases_moved") is not None and row.get("step") not in ("rollback", "wait_rollback")
    if status == "done" or (status not in rollouts.TERMINAL and promoted):
        won = [*names.champion, *([names.production] if env.strategy.kind == "ab" and names.production else [])]
        out.update({name: str(version) for name in won})
        if names.challenger and out.get(names.challenger) == str(version):
            del out[names.challenger]
    elif status not in rollouts.TERMINAL and row.get("took_traffic") and names.challenger \
            and row.get("step") not in ("rollback", "wait_rollback", "retire", "wait_retire"):
        out[names.challenger] = str(version)
    return out


def attention(entry: dict[str, Any]) -> list[str]:
    """What an operator should look at in one summary, in words."""
    return [*_hold_attention(entry), *_rollout_attention(entry), *_monitor_attention(entry)]


def alerts(entry: dict[str, Any]) -> list[str]:
    """The attention items that still call for someone: all but a hold and the note of a last
    rollout an operator stopped (``abort``, ``rollback``), whose outcome is what the operator asked
    for, as ``kubectl rollout status`` is content once an undo has rolled out (Kubernetes, "kubectl
    rollout status", https://kubernetes.io/docs/reference/kubectl/generated/kubectl_rollout/kubectl_rollout_status/).
    ``reactor status`` exits 1 on these only; the note stays in ``attention`` until the next rollout."""
    r = entry.get("rollout")
    stopped = bool(r) and r.get("status") in rollouts.STOPPED
    return [*([] if stopped else _rollout_attention(entry)), *_monitor_attention(entry)]


def _hold_attention(entry: dict[str, Any]) -> list[str]:
    # A hold is deliberate, but while it lasts the environment follows no new version.
    return [rollouts.hold_note(entry["hold"])] if entry.get("hold") else []


def _rollout_attention(entry: dict[str, Any]) -> list[str]:
    r = entry.get("rollout")
    if r and r.get("paused"):
        return [f"rollout {r['id']} of version {r['version']} paused: {r['paused']}"]
    if r and r.get("status") in ("failed", *rollouts.STOPPED):
        why = f": {r['reason']}" if r.get("reason") else ""
        return [f"the last rollout (version {r['version']}) ended {r['status']}{why}"]
    return []


def _monitor_attention(entry: dict[str, Any]) -> list[str]:
    out = []
    d = entry.get("monitor")
    if d and d.get("verdict") in DRIFT_VERDICTS:
        out.append(f"monitor: version {d.get('version')} {d['verdict']}: {d.get('reason')}")
    elif d and d.get("verdict") == "failed":
        out.append(f"monitor check failed: {d.get('reason')}")
    run = (entry.get("retraining") or {}).get("run") or {}
    if run.get("state") == "failed" or run.get("result") not in (None, "SUCCESS"):
        out.append(f"retraining run {run.get('run_id')} ended {run.get('result') or run.get('state')}: "
                   f"{run.get('message') or ''}".rstrip(": "))
    return out
