"""``import function_app`` stays cheap: the heavy libraries load only where they are used.

The worker imports ``function_app`` to index the app at every cold start (Microsoft Learn, "Python developer
reference for Azure Functions", https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python),
so what it imports is checked here; how long that takes is measured in bench/cold_start.py, not here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mlflow", "databricks.sdk", "pandas", "numpy", "sklearn", "scipy", "pyarrow")
# Loaded by the handlers on their first call: policy parsing, storage clients, telemetry.
DEFERRED = ("yaml", "pydantic", "pydantic_core", "azure.identity", "azure.data.tables", "azure.storage.queue",
            "opentelemetry", "azure.monitor", "handlers.deps", "shared.policy")


def _app_settings(tmp: Path) -> dict[str, str]:
    """The settings the app starts with (as local/stack.py gives them), telemetry included: its
    configuration waits for the first handler call even when the setting is present."""
    env = dict(os.environ)
    env.update({
        "REACTOR_STORAGE": f"sqlite:///{tmp / 'reactor.db'}", "REGISTRY_WATCH_SCHEDULE": "0 */5 * * * *",
        "REACTOR_REPAIR_SCHEDULE": "*/30 * * * * *",
        "REACTOR_MONITOR_SCHEDULE": "0 */5 * * * *",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    })
    return env


def _loaded(names: tuple[str, ...], modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in names)]


def test_importing_the_app_pulls_in_no_heavy_library(tmp_path: Path):
    code = (
        "import json, sys; import function_app; "
        "fns = [f.get_function_name() for f in function_app.app.get_functions()]; "
        "print(json.dumps({'functions': fns, 'modules': sorted(sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_app_settings(tmp_path), capture_output=True,
                         text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert _loaded(HEAVY, data["modules"]) == []
    assert _loaded(DEFERRED, data["modules"]) == []
    assert sorted(data["functions"]) == sorted([
        "registry_webhook", "records", "rollouts", "commands", "rollout", "commands_poison", "rollout_poison",
        "registry_watcher", "repair", "monitor", "monitor_decisions", "status", "commands_intake",
        "status_page", "status_model", "status_rollout", "status_rejections", "status_key",
    ])
