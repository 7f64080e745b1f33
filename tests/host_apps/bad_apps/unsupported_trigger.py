"""Fixture: a blob trigger, which the local host does not run."""

import azure.functions as func

app = func.FunctionApp()


@app.blob_trigger(arg_name="blob", path="in/{name}", connection="AzureWebJobsStorage")
def on_blob(blob: func.InputStream) -> None:
    pass
