"""The status page: server-rendered HTML for people, from the same stored state as the JSON views.

Routes (triggers/pages.py, FUNCTION auth level like the operators' JSON views): ``status/page``
(every model and environment at a glance, shared.overview), ``status/model`` (one environment:
its rollouts, paged, and drift per figure over recent monitor decisions as SVG plots, with a link
to older ones), ``status/rollout`` (one rollout's timeline with the time between steps, and its
canary analysis runs) and ``status/rejections`` (the bounded rejection counters and the journal's
rejected records, paged); and ``status/key``, anonymous, saying how to pass the key
(handlers/pages/key.py). Every page takes an optional ``refresh`` (seconds; off by default) on which
its script reloads it. No build step and nothing from outside the package: inline CSS, inline
SVG, one tiny inline script.

Keys. The host checks ``x-functions-key`` or the ``code`` query parameter (Microsoft Learn, "Azure
Functions HTTP trigger",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-bindings-http-webhook-trigger): a
person opens ``/api/status/page?code=KEY``. The server never writes the key into a page (a secret in an
answer would end up in screenshots, caches and history): links between pages are relative, and the inline
script copies ``code`` from ``location.search`` onto same-origin links in the browser. ``Referrer-Policy:
no-referrer`` and ``Cache-Control: no-store`` keep the URL with its key out of other requests and caches.
In Azure, App Service authentication (Easy Auth) may front the app as well, so a person signs in with
Entra ID; the function key is still checked behind it.

Everything rendered is escaped (``html.escape``); a malformed parameter is a 400 page saying what
is wrong, an unknown model, environment or rollout a 404 page, never a 5xx.
"""
