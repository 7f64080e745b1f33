"""``./dev up``: the stack stays up after the demo, says where its status page is (with the key)
and which ``reactor`` commands to run, and stops cleanly on Ctrl-C.

It runs what ``./dev up`` execs (``python -m local.demo --keep``) in a process of its own, with
``--stack-only`` so the stack is set up (settings, policy, webhook, retraining job) without the
demo's scenario, which tests/test_demo.py runs; the keep-running part is the same code either way.
Ctrl-C is SIGINT to the process group, as a terminal sends it.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # a safety net for a stuck start, not a measurement


def _lines(stream: object) -> queue.Queue[str | None]:
    found: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            found.put(line.rstrip("\n"))
        found.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return found


def _until(lines: queue.Queue[str | None], pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = lines.get(timeout=START_TIMEOUT)
        assert line is not None, "the process ended before printing " + pattern + ":\n" + "\n".join(seen)
        seen.append(line)
        if m := re.search(pattern, line):
            return m


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return False
    except (urllib.error.URLError, ConnectionError):
        return True
    return False


def _shell_env(tmp_path: Path) -> dict[str, str]:
    """This environment, with a ``reactor`` on PATH: the venv's console script once ``./dev`` installed
    the project; else one that runs the same entry point (``reactor.cli:main``) from this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REACTOR_")}
    venv_bin = Path(sys.executable).parent
    if shutil.which("reactor", path=str(venv_bin)) is None:
        shim = tmp_path / "bin" / "reactor"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m reactor "$@"\n')
        shim.chmod(0o755)
        venv_bin = shim.parent
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run_printed(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_up_prints_the_page_with_its_key_and_commands_that_work_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "local.demo", "--keep", "--stack-only", "--data-dir",
                             str(tmp_path / "up")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen: list[str] = []
    try:
        lines = _lines(proc.stdout)
        page = _until(lines, r"status page\s+(\S+\?code=(\S+))$", seen)
        mlflow = _until(lines, r"MLflow server\s+(\S+)", seen).group(1)
        workspace = _until(lines, r"workspace\s+(\S+)", seen).group(1)
        export = _until(lines, r"^\s+(export REACTOR_STORAGE=.*)$", seen).group(1)
        storage_status = _until(lines, r"^\s+(reactor status)$", seen).group(1)
        over_http = _until(lines, r"^\s+(reactor rollouts .*--url (\S+) --key (\S+))$", seen)

        url, key = page.group(1), page.group(2)
        assert _status(url) == 200
        assert _status(url.split("?")[0]) == 401
        assert _status(url.replace(key, "wrong-key")) == 401

        env = _shell_env(tmp_path)
        done = _run_printed(f"{export}\n{storage_status}", env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "taxi_fare/prod" in done.stdout
        done = _run_printed(over_http.group(1), env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ROLLOUT" in done.stdout
        done = _run_printed(over_http.group(1).replace(f" --key {over_http.group(3)}", ""), env)
        assert done.returncode == 4, done.stdout + done.stderr

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "\n".join(seen)
        _until(lines, r"^stopping the stack$", seen)
        for left in (url, f"{mlflow}/health", workspace):
            assert _refused(left), left
    finally:
        if proc.poll() is None:  # a failed assertion above: stop what it left running
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=60)
