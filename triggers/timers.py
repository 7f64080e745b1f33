"""Timer triggers. Schedules come from app settings (``%NAME%``), NCRONTAB with seconds first."""

from __future__ import annotations

import azure.functions as func

from handlers import deps as app_deps
from handlers import watcher

bp = func.Blueprint()


@bp.function_name("registry_watcher")
@bp.timer_trigger(arg_name="timer", schedule="%REGISTRY_WATCH_SCHEDULE%", run_on_startup=False, use_monitor=True)
def registry_watcher(timer: func.TimerRequest) -> None:
    watcher.tick(app_deps.current())
