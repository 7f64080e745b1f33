"""Fixture: two FunctionApp objects, which indexing refuses."""

import azure.functions as func

app = func.FunctionApp()
other = func.FunctionApp()


@app.route(route="x")
def x(req: func.HttpRequest) -> str:
    return "x"
