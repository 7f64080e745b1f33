"""Fixture app for tests/test_local_host.py: timer triggers. Records runs as JSON lines."""

import json
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp()

_lock = threading.Lock()
_running = 0


def record(**data: object) -> None:
    with open(os.environ["HOST_TEST_RECORD"], "a", encoding="utf-8") as out:
        out.write(json.dumps(data) + "\n")


@app.timer_trigger(schedule="%SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=False)
def slow_tick(timer: func.TimerRequest) -> None:
    """Runs longer than the one-second period: the host must never overlap it."""
    global _running
    with _lock:
        _running += 1
        concurrent = _running
    start = time.time()
    time.sleep(1.1)
    with _lock:
        _running -= 1
    record(
        fn="slow_tick",
        start=start,
        end=time.time(),
        concurrent=concurrent,
        past_due=timer.past_due,
        greeting=os.environ.get("GREETING"),
    )


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
def on_startup(timer: func.TimerRequest) -> None:
    record(fn="on_startup", past_due=timer.past_due, next=timer.schedule_status.get("Next"))


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
@app.retry(strategy="fixed_delay", max_retry_count="2", delay_interval="00:00:00")
def retried(timer: func.TimerRequest, context: func.Context) -> None:
    record(fn="retried", retry_count=context.retry_context.retry_count, max=context.retry_context.max_retry_count)
    raise RuntimeError("timer failure")
