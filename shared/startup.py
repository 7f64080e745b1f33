"""The app's start-up check: every setting the functions will need, read once at import.

``function_app`` calls :func:`check` while the worker indexes it, so a missing or malformed
setting stops the app at start with one error naming it (the worker reports an exception at
import as an indexing failure: Microsoft Learn, "Troubleshoot Python errors in Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/recover-python-functions), rather than every message
failing later and filling the poison queues. Only the standard library loads here (cold start).

A webhook secret that is missing or still an unresolved Key Vault reference does not stop the
app (the reference may resolve later, and the timers and queues work without it): it is logged
as a warning naming the setting, never its value, and ``GET /api/status`` shows it
(shared.signatures.secret_problems); deliveries are refused meanwhile. So do the other settings
that cannot work but need not stop the timers (a malformed Databricks identity setting, another
unresolved reference: shared.app_state.setting_problems).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

from shared.app_state import setting_problems
from shared.connections import DEFAULT_CONNECTION, resolve
from shared.settings import SettingError, Settings, in_azure
from shared.signatures import secret_problems
from shared.storage import connection_of

SCHEDULES = ("REGISTRY_WATCH_SCHEDULE", "REACTOR_REPAIR_SCHEDULE", "REACTOR_MONITOR_SCHEDULE")
# NCRONTAB: six fields, seconds first (five are accepted too); each a list of numbers, ranges,
# steps or names. The host validates the details; this catches an unset or mangled setting.
_CRON_FIELD = r"[0-9A-Za-z*?/,\-]+"
_NCRONTAB = re.compile(rf"{_CRON_FIELD}(?:\s+{_CRON_FIELD}){{4,5}}")


def check(env: Mapping[str, str] | None = None) -> Settings:
    """The settings, or SettingError naming the first one that cannot work."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    connection_of(settings.storage, env)  # the account the app's state and producers use
    if in_azure(env):
        resolve(DEFAULT_CONNECTION, env)  # the account the queue triggers listen on
    for name in SCHEDULES:
        value = env.get(name, "").strip()
        if not value:
            raise SettingError(name, f"is not set: a timer's schedule is %{name}% (NCRONTAB, e.g. 0 */5 * * * *)")
        if not _NCRONTAB.fullmatch(value):
            raise SettingError(name, f"{value!r} is not an NCRONTAB expression (six fields, seconds first)")
    # Plain logging: shared.log.step would configure telemetry now, which waits for the first
    # handler call (shared.telemetry). The problems name settings, never their values.
    log = logging.getLogger("reactor")
    for problem in secret_problems(settings.webhook_secret_states()):
        log.warning("startup.webhook_secret: %s", problem)
    for bad in setting_problems(env):
        log.warning("startup.setting: %s", bad.line())
    return settings
