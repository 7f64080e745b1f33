"""The app's own state for operators: which settings stop what, by name, never by value.

Shown in ``GET /api/status`` (``app``), on the status page (a banner) and, for the settings, as
start-up warnings (shared.startup). Only the standard library loads here (cold start).

What is checked, each from the documented behaviour it depends on:

- Webhook secrets: shared.signatures.secret_problems (missing, or an unresolved reference).
- Any other app setting still holding an App Service reference: App Service passes a reference it
  could not resolve through as the value (Microsoft Learn, "Use Key Vault references as app
  settings in Azure App Service and Azure Functions",
  https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references), so the
  setting (``DATABRICKS_TOKEN``, an online store's connection URL) is a reference, not a value.
- ``DATABRICKS_HOST``: a workspace URL is ``https://<workspace>.azuredatabricks.net`` (Azure
  Databricks, "Get identifiers for workspace objects",
  https://learn.microsoft.com/en-us/azure/databricks/workspace/workspace-details); plain ``http``
  only for a loopback host (the local stand-in workspace). Unset on a Function App, no
  Databricks call can be made.
- The Databricks identity (shared.workspace): ``DATABRICKS_TOKEN`` wins over the managed
  identity, so a token beside ``AZURE_CLIENT_ID`` means the identity the template granted is not
  the one used; ``AZURE_CLIENT_ID`` is a Microsoft Entra application (client) id, a GUID
  (azure-identity ``ManagedIdentityCredential(client_id=...)``), else no token can be had.
- The last authorization failure a step met (:func:`note_denied`): the app cannot list its own
  roles and grants, but a refusal names where one is missing. Databricks answers
  ``403 PERMISSION_DENIED`` (databricks-sdk ``PermissionDenied``; MLflow's REST store raises it
  with that ``error_code``); Azure Storage answers 403 (``AuthorizationPermissionMismatch``, Azure
  Storage, "Common REST API error codes",
  https://learn.microsoft.com/en-us/rest/api/storageservices/common-rest-api-error-codes). One
  row (``appstate``/``app``/``authorization``), written only on a refusal and read with one
  point read, so the status view stays bounded. A refusal by our own storage cannot be written
  there: it is logged, and the view itself answers 503.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.redaction import redact
from shared.settings import Settings, in_azure
from shared.signatures import SECRET_SETTINGS, is_platform_reference, secret_problems, secret_state
from shared.tables import TableService

_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_DATABRICKS_CALLS = "every Databricks call (serving, registry, Unity Catalog)"
TABLE, _PARTITION, _DENIED = "appstate", "app", "authorization"
# How long a refusal stays in ``attention``: it may have been granted since (then the row is
# still shown, with its time, under ``authorization``).
DENIED_ATTENTION_SECONDS = 24 * 3600.0
_MAX_DETAIL = 300
_CAUSES = 5  # how far down __cause__/__context__ a refusal is looked for


@dataclass(frozen=True)
class SettingProblem:
    """One app setting that cannot work: its name, what is wrong, what it stops. Never its value."""

    setting: str
    problem: str
    stops: str

    def line(self) -> str:
        return f"{self.setting} {self.problem}: stops {self.stops}"


def _host_problem(env: Mapping[str, str]) -> SettingProblem | None:
    host = env.get("DATABRICKS_HOST", "").strip()
    if not host:
        return SettingProblem("DATABRICKS_HOST", "is not set", _DATABRICKS_CALLS) if in_azure(env) else None
    if is_platform_reference(host):
        return None  # reported with the other unresolved references
    try:
        parts = urlsplit(host)
        scheme, hostname = parts.scheme, parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        scheme, hostname = "", None
    if not hostname or scheme not in ("https", "http") or (scheme == "http" and hostname not in _LOOPBACK):
        return SettingProblem("DATABRICKS_HOST", "is not an https:// workspace URL", _DATABRICKS_CALLS)
    return None


def _identity_problems(env: Mapping[str, str]) -> list[SettingProblem]:
    out = []
    token, client_id = env.get("DATABRICKS_TOKEN", "").strip(), env.get("AZURE_CLIENT_ID", "").strip()
    if token and secret_state(token) == "unresolved" and not is_platform_reference(token):
        out.append(SettingProblem("DATABRICKS_TOKEN", "is a Databricks secret reference, which only Databricks "
                                  "resolves, not a token", _DATABRICKS_CALLS))
    if token and client_id:
        out.append(SettingProblem("DATABRICKS_TOKEN", "is set beside AZURE_CLIENT_ID, and the token wins",
                                  "the use of the managed identity (the access granted to it goes unused)"))
    if client_id and not is_platform_reference(client_id) and not _GUID.fullmatch(client_id):
        out.append(SettingProblem("AZURE_CLIENT_ID", "is not a client id (a GUID)",
                                  _DATABRICKS_CALLS + " made with the managed identity"))
    return out


def setting_problems(env: Mapping[str, str], required: Iterable[str] = ()) -> list[SettingProblem]:
    """The app settings that cannot work (module doc). ``required`` names settings the policy
    needs (an online store's connection); the webhook secrets are left to secret_problems."""
    out = [p for p in (_host_problem(env),) if p] + _identity_problems(env)
    webhook = set(SECRET_SETTINGS.values())
    # Every setting is looked at (a Function App has tens), in name order so the list is stable.
    out += [SettingProblem(name, "is a reference the platform has not resolved (check the app identity's access "
                           "to the vault)", "everything that reads it")
            for name, value in sorted(env.items()) if name not in webhook and value and is_platform_reference(value)]
    out += [SettingProblem(name, "is not set", "publishing to the policy's online store")
            for name in sorted(set(required)) if not env.get(name, "").strip()]
    return out


def online_store_settings(policy: Any) -> list[str]:
    """The settings the policy's third-party online stores are reached through."""
    return [m.features.store.connection_setting for m in policy.models
            if m.features is not None and getattr(m.features.store, "kind", None) == "rdbms"]


def refusal(exc: BaseException) -> str | None:
    """The code of the authorization failure ``exc`` is or was caused by (module doc), else None."""
    seen: BaseException | None = exc
    for _ in range(_CAUSES):
        if seen is None:
            return None
        code = getattr(seen, "error_code", None)
        if code == "PERMISSION_DENIED":
            return code
        if getattr(seen, "status_code", None) == 403:
            return code if isinstance(code, str) and code else "403"
        seen = seen.__cause__ or seen.__context__
    return None


def note_denied(tables: TableService, exc: BaseException, where: str, now: float) -> bool:
    """Keep ``exc`` as the last authorization failure if it is one; True if it is. Never raises:
    a step's own failure handling must go on (a refusal by our storage fails this write too)."""
    code = refusal(exc)
    if code is None:
        return False
    text = redact(f"{type(exc).__name__}: {exc}")
    row = {"at": now, "where": where[:200], "code": code,
           "detail": text[:_MAX_DETAIL] + ("…" if len(text) > _MAX_DETAIL else "")}
    try:
        tables.upsert(TABLE, _PARTITION, _DENIED, row)
    except Exception as err:  # the refusal itself is logged by the caller's own step line
        logging.getLogger("reactor").warning("app_state.note_denied: not kept: %s", type(err).__name__)
    return True


def last_denied(tables: TableService) -> dict[str, Any] | None:
    """The last authorization failure kept by :func:`note_denied` (one point read), or None."""
    got = tables.get(TABLE, _PARTITION, _DENIED)
    return dict(got.data) if got else None


def app_status(settings: Settings, policy: Any, tables: TableService, now: float) -> dict[str, Any]:
    """``GET /api/status``'s ``app``: each webhook secret's state, the settings that cannot work,
    the last authorization failure, and ``attention``, everything in words."""
    secrets = settings.webhook_secret_states()
    problems = setting_problems(settings.env, online_store_settings(policy))
    denied = last_denied(tables)
    attention = [*secret_problems(secrets), *(p.line() for p in problems)]
    if denied and now - float(denied.get("at") or 0) <= DENIED_ATTENTION_SECONDS:
        at = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(denied["at"])))
        attention.append(f"{denied.get('where')} was refused ({denied.get('code')}) at {at}: the app's identity "
                         "lacks a role or grant there")
    return {"webhook_secrets": secrets, "settings": [asdict(p) for p in problems], "authorization": denied,
            "attention": attention}


def policy_and_app(settings: Settings, load: Any, tables: TableService, now: float) -> tuple[Any, dict[str, Any]]:
    """The policy ``load()`` gives, or None when it is invalid, and ``GET /api/status``'s ``app``
    with ``policy``: ``valid`` and its ``problems`` (key path, line, column, message:
    shared.policy_problems). An invalid policy file is the app's state, not an outage: each problem
    is also in ``attention``, which the API and the status page's banner show."""
    from shared.policy import Policy, PolicyError

    try:
        policy = load()
    except PolicyError as exc:
        app = app_status(settings, Policy(), tables, now)
        problems = [p.as_dict() for p in exc.problems] or [
            {"path": "(top level)", "line": None, "column": None, "message": str(exc), "severity": "error"}]
        app["policy"] = {"valid": False, "problems": problems}
        lines = [p.text(str(settings.policy_file)) for p in exc.problems] or [str(exc)]
        app["attention"] = [f"the policy file is invalid: {line}" for line in lines] + app["attention"]
        return None, app
    app = app_status(settings, policy, tables, now)
    app["policy"] = {"valid": True, "problems": []}
    return policy, app
