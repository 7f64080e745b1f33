"""Fixture: the Python parameter is not named like the binding's arg_name."""

import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="jobs", connection="AzureWebJobsStorage")
def work(message: func.QueueMessage) -> None:
    pass
