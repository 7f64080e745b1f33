"""The frame every status page shares: escaping, the inline style, the key-carrying script, the
answer type and the error pages (handlers/pages/__init__.py)."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

# A page carries its own style and script: no asset from outside the package. The CSP lets
# nothing else load (no external request could carry the key in its Referer or URL).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
                               "img-src data:; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
DEFAULT_REFRESH = 30  # seconds, what the toggle offers
REFRESH_RANGE = (2, 3600)
_NAME = re.compile(r"[A-Za-z0-9._~@:+-]{1,200}")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.25rem .5rem;
text-align:left;vertical-align:top}th{background:#f6f8fa}
.bad{color:#b42318;font-weight:600}.ok{color:#1a7f37}.warn{color:#9a6700;font-weight:600}
.banner{border:1px solid #b42318;background:#fff5f5;padding:.5rem 1rem;margin:.5rem 0}
nav a{margin-right:1rem}nav #refresh-toggle{float:right}.hint code{background:#f6f8fa;padding:.1rem .3rem}
.muted{color:#57606a}svg.plot{display:block;margin:.5rem 0 1rem;background:#fbfbfc}
"""
# The key and the refresh period stay in the browser: copied from this page's query onto
# same-origin links (the key is never written by the server). With ``refresh`` the page reloads
# itself after that many seconds; the toggle link adds or drops it on this page's own URL.
_SCRIPT = """
(function(){var q=new URLSearchParams(location.search),c=q.get("code"),r=q.get("refresh");
document.querySelectorAll("a[href]").forEach(function(a){var u=new URL(a.getAttribute("href"),location.href);
if(u.origin!==location.origin)return;if(c)u.searchParams.set("code",c);
if(r&&!u.searchParams.has("refresh"))u.searchParams.set("refresh",r);a.href=u.href;});
var t=document.getElementById("refresh-toggle");if(t){var u=new URL(location.href);
if(r){u.searchParams.delete("refresh");t.textContent="Stop refreshing (every "+r+" s)";}
else{u.searchParams.set("refresh","%(default)d");t.textContent="Refresh every %(default)d s";}
t.href=u.href;}
if(r)setTimeout(function(){location.reload();},1000*Number(r));})();
"""


class BadRequest(ValueError):
    """A malformed parameter: answered 400 with this message."""


class NotFound(LookupError):
    """An unknown model, environment or rollout: answered 404 with this message."""


@dataclass(frozen=True)
class Html:
    status: int
    body: str


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def href(view: str, **params: Any) -> str:
    """A relative link to another status page (same folder: ``status/<view>``), escaped for an attribute."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return esc(f"{view}?{query}" if query else view)


def when(ts: Any) -> str:
    """A stored epoch time as UTC text; empty for none."""
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(ts)))


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(headers: list[str] | None, rows: list[list[str]], empty: str) -> str:
    """A table of already escaped cells (``headers`` None: a list of facts, named in the first
    column); ``empty`` (plain text) when there are no rows."""
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def page(title: str, body: str, status: int = 200) -> Html:
    nav = (f'<nav><a href="{href("page")}">All models</a><a href="{href("rejections")}">Rejections</a>'
           f'<a id="refresh-toggle" href="#">Refresh every {DEFAULT_REFRESH} s</a></nav>')
    doc = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)} · ModelOps Reactor'
           f'</title><meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style>'
           f'</head><body>{nav}<h1>{esc(title)}</h1>{body}<script>{_SCRIPT % {"default": DEFAULT_REFRESH}}</script>'
           '</body></html>')
    return Html(status, doc)


def error(status: int, message: str) -> Html:
    what = {400: "Bad request", 404: "Not found", 503: "Temporarily unavailable"}.get(status, "Error")
    return page(what, f'<p class="bad">{esc(message)}</p>', status)


def limit(params: dict[str, str]) -> int:
    raw = params.get("limit") or str(DEFAULT_LIMIT)
    if not raw.isdigit() or not 0 < int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def refresh(params: dict[str, str]) -> int | None:
    """The optional auto-refresh period in seconds (``refresh=``); None: off, the default. The
    server only checks it: the page's script reloads (module comment at ``_SCRIPT``)."""
    raw = params.get("refresh")
    if not raw:
        return None
    low, high = REFRESH_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"refresh must be a whole number of seconds from {low} to {high}")
    return int(raw)


def number(value: float) -> str:
    """A number for people, never in exponent form where a plain one fits (an axis label such as
    ``1.23e+03`` is clipped and hard to read): thousands with separators, small values with three
    significant digits, only tiny ones (below 0.001) in exponent form."""
    size = abs(value)
    if size == 0:
        return "0"
    for unit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if size >= unit:
            return f"{value / unit:,.1f}{suffix}"
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 0.001:
        return f"{value:.3g}"
    return f"{value:.1e}"


def name(params: dict[str, str], key: str) -> str:
    """A required name parameter (model, environment, endpoint, rollout id), checked for shape."""
    value = params.get(key) or ""
    if not _NAME.fullmatch(value):
        raise BadRequest(f"{key} is required: letters, digits and . _ ~ @ : + - (at most 200)")
    return value
