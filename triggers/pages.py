"""HTTP triggers of the status page (handlers/pages): ``status/page``, ``status/model``,
``status/rollout`` and ``status/rejections``, HTML for people, at the FUNCTION auth level; and
``status/key``, anonymous, which says how to pass the key (handlers/pages/key.py).

Handlers are imported inside each function on its first call, as in triggers/http.py: the
worker imports this module to index the app, and the pages pull in the policy (pydantic, YAML).
"""

from __future__ import annotations

import logging
import traceback

import azure.functions as func

bp = func.Blueprint()


def _serve(view: str, req: func.HttpRequest) -> func.HttpResponse:
    from handlers import deps
    from handlers.pages.layout import HEADERS, error
    from handlers.pages.views import serve

    try:
        got = serve(view, deps.current(), dict(req.params))
    except Exception as exc:
        from shared.log import step

        # Our storage or settings failed, not the person: 503, the error redacted by step.
        step("page.failed", logging.ERROR, view=view, error=f"{type(exc).__name__}: {exc}",
             traceback="".join(traceback.format_exception(exc)))
        got = error(503, f"temporarily unavailable: {type(exc).__name__}")
    return func.HttpResponse(got.body, status_code=got.status, mimetype="text/html", charset="utf-8",
                             headers=HEADERS)


@bp.function_name("status_page")
@bp.route(route="status/page", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status_page(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("page", req)


@bp.function_name("status_model")
@bp.route(route="status/model", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status_model(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("model", req)


@bp.function_name("status_rollout")
@bp.route(route="status/rollout", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status_rollout(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("rollout", req)


@bp.function_name("status_rejections")
@bp.route(route="status/rejections", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def status_rejections(req: func.HttpRequest) -> func.HttpResponse:
    return _serve("rejections", req)


@bp.function_name("status_key")
@bp.route(route="status/key", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def status_key(req: func.HttpRequest) -> func.HttpResponse:
    from handlers.pages.key import render
    from handlers.pages.layout import HEADERS

    got = render()
    return func.HttpResponse(got.body, status_code=got.status, mimetype="text/html", charset="utf-8",
                             headers=HEADERS)
