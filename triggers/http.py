"""HTTP triggers: the registry webhook, the operators' views and their command intake.

The handlers are imported inside each function, on its first call: the worker imports this module to index the
app, and module-level work is paid at every cold start (Microsoft Learn, "Python developer reference for
Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python). The handlers pull
in pydantic and YAML for the policy.
"""

from __future__ import annotations

import logging
import traceback

import azure.functions as func

from handlers.http_types import Request, Response

bp = func.Blueprint()


def _request(req: func.HttpRequest) -> Request:
    return Request(
        method=req.method,
        body=req.get_body() or b"",
        headers={k.lower(): v for k, v in req.headers.items()},
        params=dict(req.params),
    )


def _answer(resp: Response) -> func.HttpResponse:
    return func.HttpResponse(resp.body, status_code=resp.status, mimetype="application/json")


def _unavailable(exc: Exception) -> func.HttpResponse:
    from shared.log import step

    # Our own storage or settings failed, not the caller: 503 tells the sender to retry. The
    # traceback goes through step's redaction: an error may quote a connection string.
    step("request.failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}",
         traceback="".join(traceback.format_exception(exc)))
    return _answer(Response(503, {"error": f"temporarily unavailable: {type(exc).__name__}"}))


# The signature is the authentication: registries cannot send a function key.
@bp.function_name("registry_webhook")
@bp.route(route="registry/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def registry_webhook(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, webhook

    try:
        return _answer(webhook.handle(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)


@bp.function_name("records")
@bp.route(route="records", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def records(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, operators

    try:
        return _answer(operators.list_records(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)


@bp.function_name("monitor_decisions")
@bp.route(route="monitor", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def monitor_decisions(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, operators

    try:
        return _answer(operators.list_decisions(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)


@bp.function_name("rollouts")
@bp.route(route="rollouts", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def rollouts(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, operators

    try:
        return _answer(operators.list_rollouts(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, operators

    try:
        return _answer(operators.status(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)


@bp.function_name("commands_intake")
@bp.route(route="commands", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def commands_intake(req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps, submit

    try:
        return _answer(submit.handle(deps.current(), _request(req)))
    except Exception as exc:
        return _unavailable(exc)
