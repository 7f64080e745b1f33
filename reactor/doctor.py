"""``reactor doctor``: a read-only preflight of the workspace and the storage account the app will
use, from its policy (README "The operators' CLI", docs/deploy.md "Check the deployment").

Nothing is created, changed or started: only reads. Each check is one line: ok, warn (the app
will do it itself, and says what it needs for that) or fail (a rollout would fail), with what to
do. The app settings are read from the environment as the app reads them (``DATABRICKS_HOST``,
``DATABRICKS_TOKEN`` or the Azure identity, ``DATABRICKS_WAREHOUSE_ID``, ``MLFLOW_REGISTRY_URI``,
``REACTOR_STORAGE``); the client is the app's own (``shared.workspace``).

Which API answers each privilege:

- the identity: ``w.current_user.me`` (SCIM ``GET /api/2.0/preview/scim/v2/Me``);
- a Unity Catalog model, table or schema: effective permissions, ``w.grants.get_effective``
  (``GET /api/2.1/unity-catalog/effective-permissions/{securable_type}/{full_name}?principal=``;
  Databricks REST API "Get effective permissions",
  https://docs.databricks.com/api/workspace/grants/geteffective); a model is the securable type
  ``function``;
- a serving endpoint, a job, a SQL warehouse: the Permissions API
  (``w.serving_endpoints.get_permissions`` by the endpoint's id, ``w.jobs.get_permissions``,
  ``w.warehouses.get_permissions``; Databricks REST API "Permissions",
  https://docs.databricks.com/api/workspace/permissions), matched against the identity's user or
  service principal name and its groups.

What each needs follows what the app calls: ``CAN_MANAGE`` on an endpoint (config, AI Gateway
and tag updates; "Serving endpoint ACLs", https://docs.databricks.com/aws/en/security/auth/access-control/),
``CAN_MANAGE_RUN`` on a retraining job (``run_now``), ``CAN_USE`` on the warehouse (statements);
``EXECUTE`` on a model, and ``MANAGE`` (or ownership) where the policy moves aliases; ``SELECT`` on
feature, inference and label tables, ``MODIFY`` on a feature table whose change data feed the app
turns on, ``USE_SCHEMA`` and ``CREATE_TABLE`` where an inference table is still to be created
(Databricks, "Unity Catalog privileges and securable objects",
https://docs.databricks.com/aws/en/data-governance/unity-catalog/manage-privileges/privileges).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from shared.settings import APP_ROOT

OK, WARN, FAIL = "ok", "warn", "fail"
# Permission levels, each implying those before it (Databricks, "Access control lists").
ENDPOINT_LEVELS = ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")
JOB_LEVELS = ("CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE", "IS_OWNER")
WAREHOUSE_LEVELS = ("CAN_VIEW", "CAN_MONITOR", "CAN_USE", "CAN_MANAGE", "IS_OWNER")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}" + (f" -> {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class Unusable(Exception):
    """The workspace cannot be reached, or refuses the identity: no other check can run."""


@dataclass(frozen=True)
class Identity:
    principal: str
    groups: frozenset[str]


def _levels(acl: Any, who: Identity) -> set[str]:
    held: set[str] = set()
    for entry in acl.access_control_list or []:
        if who.principal in (entry.user_name, entry.service_principal_name) or entry.group_name in who.groups:
            held |= {p.permission_level.value for p in entry.all_permissions or [] if p.permission_level}
    return held


def _has_level(held: set[str], needed: str, order: tuple[str, ...]) -> bool:
    return any(order.index(h) >= order.index(needed) for h in held if h in order)


def _privileges(w: Any, kind: str, name: str, who: Identity) -> set[str]:
    got = w.grants.get_effective(kind, name, principal=who.principal)
    return {p.privilege.value for a in got.privilege_assignments or [] for p in a.privileges or [] if p.privilege}


def _missing_privileges(w: Any, kind: str, name: str, who: Identity, needed: tuple[str, ...]) -> list[str]:
    held = _privileges(w, kind, name, who)
    return [] if "ALL_PRIVILEGES" in held else [p for p in needed if p not in held]


def _grant(kind: str, name: str, privileges: list[str], who: Identity) -> str:
    on = {"function": "FUNCTION"}.get(kind, kind.upper())
    return f"GRANT {', '.join(p.replace('_', ' ') for p in privileges)} ON {on} {name} TO `{who.principal}`"


class Doctor:
    """The checks, in order; each yields its lines."""

    def __init__(self, policy: Any, env: Mapping[str, str], storage: str | None, w: Any, who: Identity):
        self.policy, self.env, self.storage, self.w, self.who = policy, env, storage, w, who
        self.registry_uri = env.get("MLFLOW_REGISTRY_URI") or env.get("MLFLOW_TRACKING_URI") or None

    def checks(self) -> Iterator[Check]:
        yield from self.registry()
        for m in self.policy.models:
            yield from _guarded(f"model {m.name}", self.model(m))
            for env_name, env in m.environments.items():
                yield from _guarded(f"{m.name}/{env_name}", self.environment(m, env_name, env))
            if m.features is not None:
                yield from _guarded(f"features of {m.name}", self.features(m))
        yield from _guarded("SQL warehouse", self.warehouse())
        yield from self.storage_account()

    # ------------------------------------------------------------------ registry and models
    def registry(self) -> Iterator[Check]:
        from shared.policy import is_workspace_registry

        uri = self.registry_uri
        aliases = sorted({a for m in self.policy.models for e in m.environments.values() for a in _aliases(e)})
        tags = sorted({t for m in self.policy.models for t in m.required_tags})
        needs = (f"aliases {', '.join(aliases)}" if aliases else "no aliases") + \
                (f"; version tags {', '.join(tags)}" if tags else "")
        if uri == "databricks-uc":
            kind = "Unity Catalog (databricks-uc)"
        elif is_workspace_registry(uri):
            kind = "the workspace model registry (no aliases)"  # load_policy refused aliases already
        else:
            kind = f"an MLflow registry at {uri or 'the default tracking URI'}"
        yield Check("registry", OK, f"{kind}; the policy needs {needs}")

    def model(self, m: Any) -> Iterator[Check]:
        name = f"model {m.name}"
        if self.registry_uri == "databricks-uc":
            from databricks.sdk.errors import NotFound

            try:
                info = self.w.registered_models.get(m.name)
            except NotFound:
                yield Check(name, FAIL, "not found in Unity Catalog",
                            "register it (catalog.schema.model) or fix the name in the policy")
                return
            needed = ("EXECUTE", "MANAGE") if any(_aliases(e) for e in m.environments.values()) else ("EXECUTE",)
            missing = _missing_privileges(self.w, "function", m.name, self.who, needed)
            if info.owner == self.who.principal or info.owner in self.who.groups:
                missing = [p for p in missing if p != "MANAGE"]  # the owner moves aliases (docs/deploy.md 6.2)
            if missing:
                yield Check(name, FAIL, f"{self.who.principal} lacks {', '.join(missing)}",
                            _grant("function", m.name, missing, self.who))
                return
            yield Check(name, OK, f"exists; {self.who.principal} holds {', '.join(needed)}")
            return
        from mlflow.exceptions import MlflowException

        from shared.redaction import redact
        from shared.workspace import registry_client

        try:
            registry_client(self.registry_uri).get_registered_model(m.name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                yield Check(name, FAIL, "not found in the registry", "register it or fix the name in the policy")
            else:
                yield Check(name, FAIL, f"cannot read the registry: {exc.error_code}: {redact(exc.message)[:300]}",
                            "check MLFLOW_REGISTRY_URI / MLFLOW_TRACKING_URI and the identity's access to it")
            return
        yield Check(name, OK, "exists")

    # ------------------------------------------------------------------ per environment
    def environment(self, m: Any, env_name: str, env: Any) -> Iterator[Check]:
        from databricks.sdk.errors import NotFound

        where = f"{m.name}/{env_name}"
        endpoint = None
        try:
            endpoint = self.w.serving_endpoints.get(env.endpoint)
        except NotFound:
            yield Check(f"endpoint {env.endpoint} ({where})", WARN, "not found: the first rollout creates it",
                        "the identity needs the workspace entitlement to create serving endpoints")
        if endpoint is not None:
            held = _levels(self.w.serving_endpoints.get_permissions(endpoint.id), self.who)
            if _has_level(held, "CAN_MANAGE", ENDPOINT_LEVELS):
                yield Check(f"endpoint {env.endpoint} ({where})", OK, f"exists; {self.who.principal} can manage it")
            else:
                yield Check(f"endpoint {env.endpoint} ({where})", FAIL,
                            f"{self.who.principal} holds {', '.join(sorted(held)) or 'nothing'}, a rollout needs "
                            "CAN_MANAGE", f"give {self.who.principal} CAN_MANAGE on the endpoint (Permissions)")
        if env.inference_table is not None:
            yield from self.inference_table(env, where, endpoint is not None)
        if env.retraining is not None:
            yield from self.job(env.retraining.job_id, where)
        mon = env.monitoring
        for what, table in (("label table", mon.labels.table if mon and mon.labels else None),
                            ("monitored table", mon.source.table if mon and mon.source else None),
                            ("data quality monitor table", mon.lakehouse_monitor.table
                             if mon and mon.lakehouse_monitor else None)):
            if table is not None:
                yield from self.table(f"{what} {table} ({where})", table, ("SELECT",))

    def inference_table(self, env: Any, where: str, endpoint_exists: bool) -> Iterator[Check]:
        it = env.inference_table
        table = it.payload_table(env.endpoint)
        name = f"inference table {table} ({where})"
        if self.w.tables.exists(table).table_exists:
            yield from self.table(name, table, ("SELECT",))
            return
        schema = f"{it.catalog}.{it.schema_name}"
        missing = _missing_privileges(self.w, "schema", schema, self.who, ("USE_SCHEMA", "CREATE_TABLE"))
        if missing:
            yield Check(name, FAIL, f"not created yet, and {self.who.principal} lacks {', '.join(missing)} on "
                        f"{schema} to create it", _grant("schema", schema, missing, self.who))
            return
        yield Check(name, WARN, "not created yet: the app turns capture on at the next rollout and the table "
                    "appears with the first delivery; analysis and monitoring wait for it",
                    "" if endpoint_exists else "nothing to do before the first rollout")

    def table(self, name: str, table: str, needed: tuple[str, ...]) -> Iterator[Check]:
        if not self.w.tables.exists(table).table_exists:
            yield Check(name, FAIL, "not found", "create it, or fix the name in the policy")
            return
        missing = _missing_privileges(self.w, "table", table, self.who, needed)
        if missing:
            yield Check(name, FAIL, f"{self.who.principal} lacks {', '.join(missing)}",
                        _grant("table", table, missing, self.who))
            return
        yield Check(name, OK, f"exists; {self.who.principal} holds {', '.join(needed)}")

    def job(self, job_id: int, where: str) -> Iterator[Check]:
        yield from self._permissioned(
            f"retraining job {job_id} ({where})", lambda: self.w.jobs.get(job_id),
            lambda: self.w.jobs.get_permissions(str(job_id)), ("CAN_MANAGE_RUN", JOB_LEVELS, "run_now", "the job"),
            "create the job, or fix retraining.job_id in the policy", "can run it")

    def _permissioned(self, name: str, get: Callable[[], Any], acl: Callable[[], Any],
                      needs: tuple[str, tuple[str, ...], str, str], missing: str, ok: str) -> Iterator[Check]:
        """An object that must exist and on which the identity must hold a permission level
        (``needs``: the level, the levels in order, what needs it, the object in words)."""
        from databricks.sdk.errors import NotFound

        level, order, user, what = needs
        try:
            get()
        except NotFound:
            yield Check(name, FAIL, "not found", missing)
            return
        held = _levels(acl(), self.who)
        if not _has_level(held, level, order):
            yield Check(name, FAIL, f"{self.who.principal} holds {', '.join(sorted(held)) or 'nothing'}, "
                        f"{user} needs {level}", f"give {self.who.principal} {level} on {what}")
            return
        yield Check(name, OK, f"exists; {self.who.principal} {ok}")

    # ------------------------------------------------------------------ features
    def features(self, m: Any) -> Iterator[Check]:
        from shared.policy import OnlineFeatureStore, RdbmsStore

        f = m.features
        for t in f.tables:
            yield from self.feature_table(t, f.publish_mode)
        store = f.store
        if isinstance(store, OnlineFeatureStore):
            from databricks.sdk.errors import NotFound

            name = f"online store {store.name} ({m.name})"
            try:
                got = self.w.feature_store.get_online_store(store.name)
            except NotFound:
                yield Check(name, WARN, "not found: the first rollout creates it (capacity "
                            f"{store.capacity}) and waits until it is AVAILABLE")
                return
            state = got.state.value if got.state else "UNKNOWN"
            yield Check(name, OK if state == "AVAILABLE" else WARN, f"state {state}",
                        "" if state == "AVAILABLE" else "a rollout waits until it is AVAILABLE")
        elif isinstance(store, RdbmsStore):
            name = f"online store setting {store.connection_setting} ({m.name})"
            if self.env.get(store.connection_setting):
                yield Check(name, OK, "set")
            else:
                yield Check(name, FAIL, "not set", f"set the app setting {store.connection_setting} to the "
                            "database's connection URL (a Key Vault reference in Azure)")
        else:
            from databricks.sdk.errors import NotFound

            name = f"database instance {store.database_instance} ({m.name})"
            try:
                self.w.database.get_database_instance(store.database_instance)
            except NotFound:
                yield Check(name, FAIL, "not found", "create the Lakebase instance, or fix the policy")
                return
            yield Check(name, OK, "exists")

    def feature_table(self, t: Any, mode: str) -> Iterator[Check]:
        from databricks.sdk.errors import NotFound

        name = f"feature table {t.source}"
        try:
            info = self.w.tables.get(t.source)
        except NotFound:
            yield Check(name, FAIL, "not found", "create it, or fix features.tables in the policy")
            return
        keys = [list(c.primary_key_constraint.child_columns or []) for c in info.table_constraints or []
                if c.primary_key_constraint]
        if not keys or keys[0] != list(t.primary_keys):
            have = keys[0] if keys else "none"
            yield Check(name, FAIL, f"primary key {have}, the policy says {list(t.primary_keys)}",
                        "ALTER TABLE ... ADD CONSTRAINT pk PRIMARY KEY (...) with the policy's columns, or fix "
                        "the policy")
            return
        cdf = str((info.properties or {}).get("delta.enableChangeDataFeed", "")).lower() == "true"
        needed = ("SELECT",) if cdf or mode == "snapshot" else ("SELECT", "MODIFY")
        missing = _missing_privileges(self.w, "table", t.source, self.who, needed)
        if missing:
            why = "" if "MODIFY" not in missing else " (MODIFY: the app turns its change data feed on)"
            yield Check(name, FAIL, f"{self.who.principal} lacks {', '.join(missing)}{why}",
                        _grant("table", t.source, missing, self.who))
            return
        if not cdf and mode != "snapshot":
            yield Check(name, WARN, f"change data feed off: the first {mode} publish turns it on",
                        f"or now: ALTER TABLE {t.source} SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
            return
        yield Check(name, OK, f"primary key {keys[0]}" + (", change data feed on" if cdf else ""))

    # ------------------------------------------------------------------ warehouse and storage
    def warehouse(self) -> Iterator[Check]:
        wid = self.env.get("DATABRICKS_WAREHOUSE_ID", "")
        envs = [e for m in self.policy.models for e in m.environments.values()]
        if not wid:
            needed = any(m.features for m in self.policy.models) or any(e.inference_table or e.monitoring
                                                                        for e in envs)
            yield Check("SQL warehouse", FAIL if needed else OK, "DATABRICKS_WAREHOUSE_ID is not set",
                        "set it to the id of a SQL warehouse the identity can use" if needed else "")
            return
        yield from self._permissioned(
            f"SQL warehouse {wid}", lambda: self.w.warehouses.get(wid), lambda: self.w.warehouses.get_permissions(wid),
            ("CAN_USE", WAREHOUSE_LEVELS, "statements", "the warehouse"),
            "set DATABRICKS_WAREHOUSE_ID to an existing warehouse's id", "can use it")

    def storage_account(self) -> Iterator[Check]:
        from shared.redaction import redact

        if not self.storage:
            yield Check("storage", FAIL, "no storage named", "give --storage or set REACTOR_STORAGE")
            return
        try:
            yield Check("storage", OK, storage_reachable(self.storage, self.env))
        except Exception as exc:
            if not isinstance(exc, _storage_errors()):
                raise
            # An error may quote the connection it failed on: never print a key.
            yield Check("storage", FAIL, f"cannot reach it: {type(exc).__name__}: {redact(str(exc))}",
                        "check REACTOR_STORAGE / AzureWebJobsStorage and the identity's storage data roles")


def _guarded(name: str, checks: Iterator[Check]) -> Iterator[Check]:
    """The checks, or one failed line where the workspace refused or failed a read (a caller that
    may not read another principal's grants gets ``PERMISSION_DENIED``), instead of a traceback."""
    from databricks.sdk.errors import DatabricksError, PermissionDenied

    from shared.redaction import redact

    try:
        yield from checks
    except DatabricksError as exc:
        fix = ("read the grants as a workspace admin, or run without --principal as the identity itself"
               if isinstance(exc, PermissionDenied) else "run again; if it persists, the message names the cause")
        yield Check(name, FAIL, f"the workspace answered {type(exc).__name__}: {redact(str(exc))}", fix)


def _storage_errors() -> tuple[type[BaseException], ...]:
    from azure.core.exceptions import AzureError

    return sqlite3.Error, OSError, AzureError, ValueError


def storage_reachable(url: str, env: Mapping[str, str]) -> str:
    """Reads one message count per queue and one row per table of the app (bounded)."""
    from shared import app_state, journal, rejections, rollouts
    from shared.delivery import store as delivery_store
    from shared.monitoring import store as monitor_store
    from shared.queues import COMMANDS_QUEUE, ROLLOUT_QUEUE
    from shared.storage import open_queues, open_tables

    queues, tables = open_queues(url, env), open_tables(url, env)
    names = (COMMANDS_QUEUE, ROLLOUT_QUEUE)
    for q in names:
        queues.count(q)
    table_names = (journal.TABLE, rollouts.ROLLOUTS, rejections.TABLE, monitor_store.MONITOR,
                   monitor_store.DECISIONS, delivery_store.ANALYSES, app_state.TABLE)
    for t in table_names:
        tables.get(t, "doctor", "doctor")
    return f"queues {', '.join(names)} and {len(table_names)} tables reachable"


def _aliases(env: Any) -> list[str]:
    a = env.aliases
    return [x for x in (env.track_alias, a.challenger, a.production, *a.champion) if x]


def identity(w: Any) -> Identity:
    me = w.current_user.me()
    return Identity(me.user_name or me.id or "", frozenset(g.display for g in me.groups or [] if g.display))


def run(policy_file: Path, storage: str | None, env: Mapping[str, str] | None = None,
        client: Callable[[], Any] | None = None, principal: str | None = None) -> list[Check]:
    """Every check, after the identity's. ``principal`` (a user name or a service principal's
    application id) has its privileges checked instead of the caller's: an operator checks the
    app's managed identity with their own login (its group memberships are then not seen).
    Raises PolicyError (the policy), Unusable (the workspace)."""
    from shared.policy import load_policy

    env = os.environ if env is None else env
    registry = env.get("MLFLOW_REGISTRY_URI") or env.get("MLFLOW_TRACKING_URI") or None
    policy = load_policy(policy_file, registry)
    w, caller = connect(env, client)
    first = Check("identity", OK, f"{caller.principal} has a token for {env.get('DATABRICKS_HOST')} ("
                  + ("DATABRICKS_TOKEN" if env.get("DATABRICKS_TOKEN") else "the Azure identity") + ")"
                  + (f"; privileges checked for {principal}" if principal else ""))
    who = Identity(principal, frozenset()) if principal else caller
    return [first, *Doctor(policy, env, storage, w, who).checks()]


def connect(env: Mapping[str, str], client: Callable[[], Any] | None = None) -> tuple[Any, Identity]:
    from databricks.sdk.errors import PermissionDenied, Unauthenticated

    from shared.redaction import redact

    host = env.get("DATABRICKS_HOST")
    if not host:
        raise Unusable("DATABRICKS_HOST is not set: the workspace URL, https://adb-....azuredatabricks.net")
    try:
        from shared.workspace import workspace_client

        w = (client or workspace_client)()
        return w, identity(w)
    except (Unauthenticated, PermissionDenied) as exc:
        raise Unusable(f"{host} refused the identity ({type(exc).__name__}: {redact(str(exc))}): check "
                       "DATABRICKS_TOKEN, or the managed identity (AZURE_CLIENT_ID) and that it was added to "
                       "the workspace as a service principal") from exc
    except Exception as exc:
        from azure.core.exceptions import ClientAuthenticationError

        if isinstance(exc, ClientAuthenticationError):
            raise Unusable(f"no Entra ID token for Azure Databricks: {redact(str(exc)).splitlines()[0]}") from exc
        if _unreachable(exc):
            raise Unusable(f"cannot reach {host}: {type(exc).__name__}: {redact(str(exc)).splitlines()[0]}") from exc
        raise


def _unreachable(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, TimeoutError, ConnectionError)):
            return True
        if "Max retries exceeded" in str(seen) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def command(args: Any, out: TextIO, err: TextIO) -> int:
    """``reactor doctor``: exit 0 when nothing would fail a rollout (warnings included), 1 when a
    check failed or the policy is invalid, 3 when the policy file is missing, 4 when the workspace
    cannot be reached or refuses the identity."""
    from shared.policy import PolicyError

    policy = args.policy or Path(os.environ.get("REACTOR_POLICY_FILE") or APP_ROOT / "policy.yaml")
    if not policy.is_file():
        print(f"reactor: {policy}: no such policy file", file=err)
        return 3
    try:
        checks = run(policy, args.storage or os.environ.get("REACTOR_STORAGE"), principal=args.principal)
    except PolicyError as exc:
        print(f"reactor: invalid policy: {exc}", file=err)
        return 1
    except Unusable as exc:
        print(f"reactor: {exc}", file=err)
        return 4
    failed = any(c.status == FAIL for c in checks)
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]}, indent=2), file=out)
    else:
        print("\n".join(c.line() for c in checks), file=out)
    return 1 if failed else 0
