"""Fixture: a TimeSpan schedule, which only a Dedicated plan accepts."""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="00:05:00", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    pass
