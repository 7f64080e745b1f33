"""Benchmark: what ``import function_app`` costs a fresh interpreter, next to ``import azure.functions``.

The worker imports ``function_app`` to index the app, so that import is paid at every cold
start (Microsoft Learn, "Python developer reference for Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python).
Each run is a new interpreter that times its case's
statements with ``perf_counter`` (interpreter start-up excluded, reported apart); the cases alternate run
by run, so a busy moment on the machine falls on all of them alike. A third case adds the
handler modules, which the triggers import on their first call: the cost that moved from
indexing to the first invocations; a fourth adds what the first call pays when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (shared.telemetry configuring the distro).

The subprocesses get the app settings the local stack gives the app (local/stack.py) and no
``APPLICATIONINSIGHTS_CONNECTION_STRING``. Prints a Markdown table; ``--write`` appends it to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.report import emit
from local.stack import app_settings
from shared.settings import APP_ROOT

HANDLERS = ", ".join(f"handlers.{m}" for m in ("webhook", "operators", "commands", "rollout", "repair", "watcher"))
# Exports go to a port where nothing listens: configuring is measured, not sending.
CONNECTION = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
              "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/")
CASES = {
    "import azure.functions": "import azure.functions",
    "import function_app": "import function_app",
    "import function_app, then every handler module": f"import function_app; import {HANDLERS}",
    "... and configure telemetry (first call with the setting)":
        f"import function_app; import {HANDLERS}; from shared import telemetry; telemetry.configure({CONNECTION!r})",
}
BASE = "import azure.functions"


def _probe(statement: str) -> str:
    return (f"import time; t = time.perf_counter(); {statement}; "
            "print(time.perf_counter() - t)")


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    # The exporter's own usage reports and remote configuration would reach out to Azure.
    env.update(APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true", APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED="true")
    env.update(app_settings(data_dir=tmp, policy=APP_ROOT / "policy.yaml", mlflow_url="http://127.0.0.1:5000",
                            workspace_url="http://127.0.0.1:8081"))
    return env


def _once(statement: str, env: dict[str, str]) -> tuple[float, float]:
    """(seconds the statements took, seconds the whole process took) in one fresh interpreter."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _probe(statement)], cwd=APP_ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]), time.perf_counter() - started


def run(n: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(Path(tmp))
        for statement in CASES.values():  # warm-up: bytecode caches written, files in the page cache
            _once(statement, env)
        imports: dict[str, list[float]] = {name: [] for name in CASES}
        whole: dict[str, list[float]] = {name: [] for name in CASES}
        started = time.perf_counter()
        for _ in range(n):
            for name, statement in CASES.items():
                took, process = _once(statement, env)
                imports[name].append(took * 1000)
                whole[name].append(process * 1000)
        elapsed = time.perf_counter() - started
    base = statistics.median(imports[BASE])
    lines = [
        f"### Cold start: importing the app ({datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.python_version()}, {n} fresh interpreters per case, alternating)",
        "",
        "| case | p50 ms | p90 ms | whole process p50 ms | p50 vs import azure.functions |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in CASES:
        p90 = statistics.quantiles(imports[name], n=10, method="inclusive")[8]
        lines.append(f"| `{name}` | {statistics.median(imports[name]):.1f} | {p90:.1f} | "
                     f"{statistics.median(whole[name]):.1f} | {statistics.median(imports[name]) / base:.2f}x |")
    lines += ["", f"Whole run: {elapsed:.0f} s. Whole process: interpreter start-up, the import and exit."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=60, help="fresh interpreters per case")
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    emit(run(args.n), args.write)


if __name__ == "__main__":
    main()
