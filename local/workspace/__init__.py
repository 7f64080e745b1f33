"""A local stand-in for the Databricks workspace REST API (docs/architecture.md, "The local workspace").

Usage::

    from local.workspace import LocalWorkspace
    ws = LocalWorkspace(port=0, token="local-token", registry_uri="sqlite:///mlflow.db", data_dir=path).start()
    w = WorkspaceClient(host=ws.url, token="local-token")   # the real databricks-sdk
    ws.faults.rate_503 = 0.2                                  # fault injection, also POST /local/faults
    ws.stop()

What each module emulates is tagged with where it comes from: [SRC] the databricks-sdk-py source
(https://github.com/databricks/databricks-sdk-py), whose docstrings come from Databricks' OpenAPI spec;
[DOC] a Databricks documentation page named beside it; [FAKE] the fake workspace of the Databricks CLI
(``libs/testserver``, https://github.com/databricks/cli); [3P] third-party public recordings of the
API or of real tables; [INF] inferred here and not verified, a default to revisit.

Never imported by the app; only by local tooling and tests. Importing it pulls in neither
mlflow nor pandas (they are imported when a model is loaded or scored).
"""

from .errors import ApiError
from .faults import Faults
from .server import LocalWorkspace

__all__ = ["ApiError", "Faults", "LocalWorkspace"]
