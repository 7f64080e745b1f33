"""The status pages by name, each from the request's query parameters to a page
(handlers/pages/__init__.py): a malformed parameter or continuation token is a 400 page, an
unknown model, environment or rollout a 404 page; with an invalid policy file, every view is the
overview, whose banner lists the file's problems."""

from __future__ import annotations

from collections.abc import Callable

from handlers.deps import Deps
from handlers.pages import model, overview, rejections, rollout
from handlers.pages.layout import BadRequest, Html, NotFound, error, limit, name, refresh
from shared import overview as summary
from shared.app_state import policy_and_app
from shared.policy import PolicyError


def _overview(deps: Deps, params: dict[str, str]) -> Html:
    # An invalid policy file is shown in the banner, problem by problem, not as an outage.
    policy, app = policy_and_app(deps.settings, deps.policy, deps.tables, deps.clock())
    return overview.render(deps.tables, summary.status(deps.tables, policy) if policy else [], app)


def _model(deps: Deps, params: dict[str, str]) -> Html:
    return model.render(deps.tables, deps.policy(), name(params, "model"), name(params, "environment"),
                        limit=limit(params), continuation=params.get("continuation") or None,
                        older=params.get("older") or None)


def _rollout(deps: Deps, params: dict[str, str]) -> Html:
    return rollout.render(deps.tables, name(params, "endpoint"), name(params, "id"))


def _rejections(deps: Deps, params: dict[str, str]) -> Html:
    return rejections.render(deps.tables, limit=limit(params), continuation=params.get("continuation") or None)


VIEWS: dict[str, Callable[[Deps, dict[str, str]], Html]] = {
    "page": _overview, "model": _model, "rollout": _rollout, "rejections": _rejections}


def serve(view: str, deps: Deps, params: dict[str, str]) -> Html:
    try:
        refresh(params)  # checked here once for every view; the page's script acts on it
        return VIEWS[view](deps, params)
    except PolicyError:
        # Every view needs the policy; the overview's banner says what is wrong with it.
        return _overview(deps, params)
    except NotFound as exc:
        return error(404, str(exc))
    except (BadRequest, ValueError) as exc:
        # ValueError: a continuation token this service did not issue (shared.tables).
        return error(400, str(exc))
