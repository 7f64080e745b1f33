"""The Function App: Blueprints registered, nothing else (docs/architecture.md principle 2).

Importing this module must stay cheap: no mlflow, databricks-sdk, pandas or numpy here or
in what it imports at module level (principle 9).
"""

import azure.functions as func

from shared import startup
from triggers import http, pages, queues, timers

# A bad setting stops the app here, at indexing, with one error naming it (shared.startup).
startup.check()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http.bp)
app.register_functions(pages.bp)
app.register_functions(queues.bp)
app.register_functions(timers.bp)
