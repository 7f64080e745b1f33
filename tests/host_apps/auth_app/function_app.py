"""Fixture app for tests/test_local_host.py: one HTTP function per auth level."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _answer(req: func.HttpRequest, name: str) -> func.HttpResponse:
    return func.HttpResponse(f"{name} {req.method}")


@app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def open_door(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(req, "open_door")


@app.route(route="guarded", methods=["GET", "POST"])  # the app's level: FUNCTION
def guarded(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(req, "guarded")


@app.route(route="other", methods=["GET"], auth_level="function")
def other(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(req, "other")


@app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return _answer(req, "admin_only")
