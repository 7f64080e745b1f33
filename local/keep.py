"""``./dev up``: the stack the demo ran on stays up for a person to try, until Ctrl-C.

It prints where each part answers (the status page with its key, the API, the MLflow server,
the local workspace, the state) and the ``reactor`` commands to run against it, then waits
for SIGINT or SIGTERM and returns, so the callers' ``with`` blocks stop the host, the workspace
and the MLflow server in order.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO


def try_it(*, host_url: str, key: str, mlflow_url: str, workspace_url: str, settings: Mapping[str, str],
           data_dir: Path, model: str, environment: str) -> str:
    """What to open and run against the running stack; every command is one a shell runs as printed."""
    storage = settings["REACTOR_STORAGE"]
    exports = {"REACTOR_STORAGE": storage, "REACTOR_POLICY_FILE": settings["REACTOR_POLICY_FILE"]}
    if "AzureWebJobsStorage" in settings:
        exports["AzureWebJobsStorage"] = settings["AzureWebJobsStorage"]
    api = f"{host_url}/api"
    export = "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items())
    over_http = f"--url {api} --key {key}"
    lines = [
        "",
        "The stack stays up until Ctrl-C:",
        f"  status page   {api}/status/page?code={key}",
        f"  HTTP API      {api}  (function key {key}, sent as x-functions-key)",
        f"  MLflow server {mlflow_url}",
        f"  workspace     {workspace_url}  (token {settings.get('DATABRICKS_TOKEN', '(identity)')})",
        f"  state         {storage}",
        f"  logs          {data_dir / 'reactor.log'}, {data_dir / 'mlflow' / 'mlflow-server.log'}",
        "",
        "Try the operators' CLI in another terminal, from this folder (`reactor` is in .venv/bin):",
        "  source .venv/bin/activate",
        f"  {export}",
        "  reactor status",
        f"  reactor rollouts --model {model}",
        "  reactor records --limit 20",
        "  reactor monitor --history 5",
        f"  reactor check_drift {model} {environment} --wait",
        "or over the HTTP API, as against a Function App:",
        f"  reactor status {over_http}",
        f"  reactor rollouts --model {model} {over_http}",
        "",
    ]
    return "\n".join(lines)


def until_interrupted(out: TextIO, text: str) -> None:
    """Print ``text`` and block until SIGINT (Ctrl-C) or SIGTERM; the handlers are restored after."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        stop.set()

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(text, file=out, flush=True)
        stop.wait()
        print("stopping the stack", file=out, flush=True)
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)

