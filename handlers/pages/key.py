"""``status/key``: how to open the status page with its key, the one page anyone may open.

The host refuses a page opened without its function key before the app sees the request: a
401 with an empty body, which a browser shows as a bare "HTTP ERROR 401" (Microsoft Learn,
"Azure Functions HTTP trigger", https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-http-webhook-trigger:
the key goes in the ``code`` query parameter or the ``x-functions-key`` header). The app cannot
change that answer, so this anonymous page says what to do instead; it reads no state and shows
no secret. Its form sends the key as ``code`` to the overview, as a person would type it."""

from __future__ import annotations

from handlers.pages.layout import Html, href, page

KEY_HEADER = "x-functions-key"


def render() -> Html:
    body = (
        '<section class="hint" id="key-help"><p>The status pages need the app\'s function key (a 401 '
        '"HTTP ERROR 401" means it was missing or wrong). Pass it one of two ways:</p><ol>'
        '<li>in the address: <code>/api/status/page?code=KEY</code> (the pages carry it on to every link, '
        'in the browser only);</li>'
        f'<li>as the header <code>{KEY_HEADER}: KEY</code> (for scripts, e.g. '
        f'<code>curl -H "{KEY_HEADER}: KEY" …/api/status/page</code>).</li></ol>'
        '<p>The key: <code>az functionapp function keys list</code> or <code>az functionapp keys list</code> '
        'for the app in Azure; for the local stack, <code>HOST_KEY</code> in <code>local/stack.py</code>.</p>'
        '</section>'
        f'<form method="get" action="{href("page")}"><label>Function key '
        '<input type="password" name="code" autocomplete="off" required></label> '
        '<button type="submit">Open the status page</button></form>')
    return page("Opening the status page", body)
