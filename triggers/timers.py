"""Timer triggers. Schedules come from app settings (``%NAME%``), NCRONTAB with seconds first.

The handlers are imported inside each function, on its first call, not when the worker
indexes the app (cold start: Microsoft Learn, "Python developer reference for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python).
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("registry_watcher")
@bp.timer_trigger(arg_name="timer", schedule="%REGISTRY_WATCH_SCHEDULE%", run_on_startup=False, use_monitor=True)
def registry_watcher(timer: func.TimerRequest) -> None:
    from handlers import deps, watcher

    watcher.tick(deps.current())


# Not run_on_startup (not for production: Microsoft Learn, "Timer trigger for Azure Functions",
# https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-timer); a short schedule
# instead, so a restarted host repairs within one period.
@bp.function_name("repair")
@bp.timer_trigger(arg_name="timer", schedule="%REACTOR_REPAIR_SCHEDULE%", run_on_startup=False, use_monitor=True)
def repair_sweep(timer: func.TimerRequest) -> None:
    from handlers import deps, repair

    repair.tick(deps.current())


@bp.function_name("monitor")
@bp.timer_trigger(arg_name="timer", schedule="%REACTOR_MONITOR_SCHEDULE%", run_on_startup=False, use_monitor=True)
def monitor(timer: func.TimerRequest) -> None:
    from handlers import deps, monitor

    monitor.tick(deps.current())
