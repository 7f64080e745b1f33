"""``status/rejections``: what was refused. The anonymous requests refused before they proved who
sent them (shared.rejections: a counter and a ring of samples per HTTP status, bounded by
design) and the journal's records that ended ``rejected`` (shared.journal), a page at a time.

Each kind's rejected records are indexed newest first (shared.journal J6), so a page is the
newest ``limit`` of them after the previous page's, newest first across pages: bounded per
request (``limit`` index entries per kind and a point read per record shown), and "Next" is there
only while older ones are."""

from __future__ import annotations

from handlers.pages.layout import Html, esc, href, page, table, when
from shared import journal, rejections
from shared.tables import TableService


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
    rows, token = journal.rejected_page(tables, limit=limit, continuation=continuation)
    body += "<h2>Rejected events and commands</h2>"
    none = "No more rejected records." if continuation else "None rejected."
    body += table(["received", "kind", "record", "reason"],
                  [[esc(when(r.get("received_at"))), esc(r.get("kind")), esc(r.get("key")), esc(r.get("reason"))]
                   for r in rows], none)
    if token:
        body += f'<p><a class="next" href="{href("rejections", limit=limit, continuation=token)}">Next records</a></p>'
    return page("Rejections", body)
