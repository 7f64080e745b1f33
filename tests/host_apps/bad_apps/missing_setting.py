"""Fixture: a %SETTING% schedule whose setting does not exist."""

import azure.functions as func

app = func.FunctionApp()


@app.timer_trigger(schedule="%LOCAL_HOST_TEST_NO_SUCH_SETTING%", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    pass
