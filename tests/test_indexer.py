"""The Azure Functions Python worker's own indexer reads ``function_app.py`` as Azure will.

On Python 3.13 the host loads the worker code from ``azure-functions-runtime`` (Microsoft Learn, "Python
developer reference for Azure Functions",
https://learn.microsoft.com/en-us/azure/azure-functions/functions-reference-python; the package:
https://pypi.org/project/azure-functions-runtime/). A test calls its indexer as the worker does
(https://github.com/Azure/azure-functions-python-worker, ``loader.py``): ``load_binding_registry``,
``loader.index_function_app`` and ``loader.process_indexed_function`` with stand-in protos.
That package needs Python 3.13 and azure-functions 2.x, so it runs in its own virtual
environment (``.local/indexer-venv``, reinstalled when its requirements change, like ``./dev``'s
``.venv``) with the app's requirements.txt, in a subprocess that prints what it indexed as
JSON. Without Python 3.13 the test fails and says so: it is never skipped.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from local.stack import app_settings

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".local" / "indexer-venv"
RUNTIME = "azure-functions-runtime==1.3.0"
NEVER = "0 0 0 1 1 *"

# Runs inside the 3.13 environment, app directory as argv[1].
INDEXER = r"""
import json, os, sys, types
from importlib.metadata import version

app_dir = sys.argv[1]
sys.path.insert(0, app_dir)  # the worker imports the script by its module stem
from azure_functions_runtime import loader
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry

load_binding_registry()
indexed = loader.index_function_app(os.path.join(app_dir, "function_app.py"))


class Msg:  # stands in for the protobuf messages the worker would send to the host
    def __init__(self, **fields):
        self.__dict__.update(fields)


protos = types.SimpleNamespace(
    BindingInfo=type("BindingInfo", (Msg,), {"in_": 0, "out": 1, "inout": 2,
                                             "undefined": 0, "string": 1, "binary": 2, "stream": 3}),
    RpcFunctionMetadata=Msg, RpcRetryOptions=Msg)
metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, app_dir)
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "versions": {name: version(name) for name in ("azure-functions", "azure-functions-runtime")},
    "functions": {m.name: {"script_file": m.script_file, "retry": m.retry_options and vars(m.retry_options),
                           "bindings": [json.loads(b) for b in m.raw_bindings]} for m in metadata},
}))
"""


def _python313() -> str:
    """A Python 3.13 interpreter: $PYTHON313, pyenv's 3.13, or python3.13 on PATH."""
    candidates = [os.environ.get("PYTHON313", ""),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))),
                  shutil.which("python3.13") or ""]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                                   capture_output=True, text=True)
        except OSError:  # not there or not executable: try the next one
            continue
        if probe.stdout.strip() == "True":
            return candidate
    pytest.fail("Python 3.13 is needed to run the worker's indexer (azure-functions-runtime needs it) and none was"
                f" found: tried {[c for c in candidates if c]}; install it (pyenv install 3.13) or set PYTHON313")


def _indexer_python() -> Path:
    """The 3.13 environment's interpreter, installed or updated when its requirements changed."""
    python = _python313()
    requirements = ROOT / "requirements.txt"
    want = hashlib.sha256(requirements.read_bytes() + f"\n{RUNTIME}\n".encode()).hexdigest()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    stamp = VENV / ".requirements.sha"
    # One installer at a time: two test runs on one machine share this environment.
    with open(VENV.parent / "indexer-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", "--clear", str(VENV)], check=True)
        if not stamp.exists() or stamp.read_text() != want:
            install = subprocess.run(
                [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements), RUNTIME],
                capture_output=True, text=True)
            assert install.returncode == 0, f"installing the indexer's environment failed:\n{install.stderr[-4000:]}"
            stamp.write_text(want)
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    data_dir = tmp_path_factory.mktemp("indexer")
    # The settings the app starts with (local/stack.py), given explicitly: nothing is inherited
    # from this process but PATH and HOME, so the import sees these settings and nothing else.
    settings = app_settings(data_dir=data_dir, policy=ROOT / "policy.yaml", mlflow_url="http://127.0.0.1:9",
                            workspace_url="http://127.0.0.1:9", watch_schedule=NEVER, repair_schedule=NEVER)
    settings["REACTOR_STORAGE"] = f"sqlite:///{data_dir / 'reactor.db'}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "PYTHONDONTWRITEBYTECODE": "1", **settings}
    run = subprocess.run([str(_indexer_python()), "-c", INDEXER, str(ROOT)], cwd=data_dir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"the worker's indexer failed on function_app.py:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_the_indexer_is_the_python_313_worker_code(indexed: dict) -> None:
    assert indexed["python"] == [3, 13]
    assert indexed["versions"] == {"azure-functions": "2.3.0", "azure-functions-runtime": "1.3.0"}


def _http(route: str, method: str, level: str) -> list[dict]:
    return [{"direction": "IN", "type": "httpTrigger", "name": "req", "methods": [method], "authLevel": level,
             "route": route},
            {"direction": "OUT", "type": "http", "name": "$return"}]


def _queue(name: str) -> list[dict]:
    return [{"direction": "IN", "type": "queueTrigger", "name": "msg", "queueName": name,
             "connection": "AzureWebJobsStorage"}]


def _timer(setting: str) -> list[dict]:
    return [{"direction": "IN", "type": "timerTrigger", "name": "timer", "schedule": f"%{setting}%",
             "runOnStartup": False, "useMonitor": True}]


def test_every_function_is_indexed_with_its_trigger(indexed: dict) -> None:
    bindings = {name: fn["bindings"] for name, fn in indexed["functions"].items()}
    assert bindings == {
        "registry_webhook": _http("registry/webhook", "POST", "ANONYMOUS"),
        "records": _http("records", "GET", "FUNCTION"),
        "rollouts": _http("rollouts", "GET", "FUNCTION"),
        "commands": _queue("reactor-commands"),
        "rollout": _queue("reactor-rollout"),
        "commands_poison": _queue("reactor-commands-poison"),
        "rollout_poison": _queue("reactor-rollout-poison"),
        "registry_watcher": _timer("REGISTRY_WATCH_SCHEDULE"),
        "repair": _timer("REACTOR_REPAIR_SCHEDULE"),
        "monitor": _timer("REACTOR_MONITOR_SCHEDULE"),
        "monitor_decisions": _http("monitor", "GET", "FUNCTION"),
        "status": _http("status", "GET", "FUNCTION"),
        "commands_intake": _http("commands", "POST", "FUNCTION"),
        "status_page": _http("status/page", "GET", "FUNCTION"),
        "status_model": _http("status/model", "GET", "FUNCTION"),
        "status_rollout": _http("status/rollout", "GET", "FUNCTION"),
        "status_rejections": _http("status/rejections", "GET", "FUNCTION"),
        "status_key": _http("status/key", "GET", "ANONYMOUS"),
    }
    # Blueprint functions all live in the one script the worker loaded; none has a retry policy.
    assert {(fn["script_file"], fn["retry"]) for fn in indexed["functions"].values()} == {("function_app.py", None)}
