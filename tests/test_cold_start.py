"""``import function_app`` stays cheap: the heavy libraries load only where they are used."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mlflow", "databricks.sdk", "pandas", "numpy", "sklearn", "scipy", "pyarrow")


def test_importing_the_app_pulls_in_no_heavy_library():
    code = (
        "import json, sys; import function_app; "
        "fns = [f.get_function_name() for f in function_app.app.get_functions()]; "
        "print(json.dumps({'functions': fns, 'modules': sorted(sys.modules)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = [m for m in data["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []
    assert sorted(data["functions"]) == sorted([
        "registry_webhook", "records", "rollouts", "commands", "rollout", "commands_poison", "rollout_poison",
        "registry_watcher", "repair",
    ])
