"""``status/rejections``: what was refused. The anonymous requests refused before they proved who
sent them (shared.rejections: a counter and a ring of samples per HTTP status, bounded by
design) and the journal's records that ended ``rejected`` (shared.journal), a page at a time.

The journal is kept in key order, and rejected records are few among many, so a page reads on
(:func:`rejected_page`) until it holds ``limit`` of them or has read ``SCAN`` entities: bounded
per request, and a "Next" link never leads to an empty page unless the scan's bound was met
(which the page then says). Within a page, the newest comes first."""

from __future__ import annotations

from typing import Any

from handlers.pages.layout import Html, esc, href, page, table, when
from shared import journal, rejections
from shared.tables import TableService

SCAN = 2000  # journal entities one page reads at most to find its rejected records
_QUERIES = 40  # and queries (of ``limit`` entities each)


def rejected_page(tables: TableService, *, limit: int, continuation: str | None
                  ) -> tuple[list[dict[str, Any]], str | None, int]:
    """The rejected records among the journal's entities from ``continuation`` on, read ``limit``
    at a time until at least ``limit`` are found (so a page holds fewer than ``2 * limit``), the
    journal ends, or ``SCAN`` entities or ``_QUERIES`` queries were read; newest first, with the
    token after the last entity read (None: the journal's end) and how many entities were read.
    A token names an entity, not a record within a query's answer, so a page never stops inside one."""
    rows: list[dict[str, Any]] = []
    token, read = continuation, 0
    for _ in range(_QUERIES):
        got, token = journal.page(tables, None, "rejected", limit=limit, continuation=token)
        rows.extend(got)
        read += limit
        if token is None or len(rows) >= limit or read >= SCAN:
            break
    return sorted(rows, key=lambda r: r.get("received_at") or 0, reverse=True), token, read


def render(tables: TableService, *, limit: int, continuation: str | None) -> Html:
    body = "<h2>Refused anonymous requests</h2>"
    summary = rejections.summary(tables)
    counts = [[esc(status), esc(s["counts"].get("total", 0)),
               esc(", ".join(f"{k}: {v}" for k, v in (s["counts"].get("by_code") or {}).items())),
               esc(when(s["counts"].get("last_at")))] for status, s in sorted(summary.items())]
    body += table(["HTTP status", "total", "by reason", "last"], counts, "None refused.")
    samples = [[esc(when(x.get("at"))), esc(x.get("status")), esc(x.get("code")), esc(x.get("reason"))]
               for s in summary.values() for x in s["samples"][:10]]
    body += table(["at", "status", "code", "reason"], samples, "")
    rows, token, read = rejected_page(tables, limit=limit, continuation=continuation)
    body += "<h2>Rejected events and commands</h2>"
    none = (f"None rejected among the next {read} journal entries; Next reads on." if token
            else "No more rejected records." if continuation else "None rejected.")
    body += table(["received", "kind", "record", "reason"],
                  [[esc(when(r.get("received_at"))), esc(r.get("kind")), esc(r.get("key")), esc(r.get("reason"))]
                   for r in rows], none)
    if token:
        body += f'<p><a class="next" href="{href("rejections", limit=limit, continuation=token)}">Next records</a></p>'
    return page("Rejections", body)
