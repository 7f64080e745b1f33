"""Fixture app for tests/test_local_host.py: HTTP triggers (a blueprint and plain decorators)."""

import asyncio
import json

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="items/{item_id}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    seen = {
        "item_id": req.route_params.get("item_id"),
        "params": dict(req.params),
        "method": req.method,
        "url": req.url,
        "probe": req.headers.get("x-probe"),
    }
    return func.HttpResponse(json.dumps(seen), mimetype="application/json", headers={"X-Function": "get_item"})


@bp.route(route="items/special", methods=["GET"])
def special_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("special")


app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(bp)


@app.route(route="echo", methods=["POST", "PUT"])
async def echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0)
    return func.HttpResponse(
        req.get_body(),
        status_code=201,
        mimetype="application/octet-stream",
        headers={"X-Function-Name": context.function_name},
    )


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> str:
    return "path=" + req.route_params.get("path", "")
