"""One task of a local job run as a real Python process (the Jobs service is ``jobs.py``).

What a ``spark_python_task`` gets, following Databricks ("Python script task for jobs",
"Configure task parameters", "What is a dynamic value reference?" [DOC]):

- ``python_file`` runs as ``sys.executable python_file parameters...``; the parameters are the
  task's JSON array of strings, "passed as arguments to the script as if it were being called from
  the command line". Job parameters are *not* pushed down to such tasks ("Job parameters are not
  pushed down to task that use JSON arrays. You can reference job parameters using the dynamic value
  reference ``{{job.parameters.<name>}}``" [DOC]); the run's ``job_parameters`` show them all.
- Dynamic value references ``{{...}}`` in the parameters are replaced by string literals before the
  process starts ("a string literal replaces the dynamic value reference"; "not evaluated as
  expressions" [DOC]): ``job.id``, ``job.name``, ``job.run_id``, ``job.start_time.iso_datetime``,
  ``job.trigger.type``, ``job.parameters.<name>``, ``task.name``, ``task.run_id``, and the older
  task parameter variables ``{{job_id}}``, ``{{run_id}}`` (the task run), ``{{parent_run_id}}``,
  ``{{task_key}}``. A reference to anything else keeps the task from starting (Databricks refuses an
  invalid reference [INF: where and with which text is not verified]).
- ``python_file`` is a path on this machine: absolute, or relative to the workspace process's working
  directory (the local stand-in for a workspace file or a Git folder path); ``file:`` URIs are
  accepted. The process runs in that same working directory, so relative registry URIs mean the same
  thing in both.
- Credentials: a Databricks job run calls the workspace with credentials of its own, not its
  creator's token. The process gets ``DATABRICKS_HOST`` (the workspace URL) and ``DATABRICKS_TOKEN``
  (the run's own token, valid while the run is active), and ``MLFLOW_TRACKING_URI`` /
  ``MLFLOW_REGISTRY_URI`` set to the workspace's registry (on Databricks a job's MLflow talks to the
  workspace's tracking server and registry). Every other ``DATABRICKS_*`` and ``ARM_*`` variable of
  the workspace process is removed, so that no second auth method reaches the SDK (it refuses to
  choose between two).
- stdout and stderr go to files next to the run (``logs`` of ``runs/get-output``); the process is
  the leader of its own session, so stopping it stops whatever it started as well.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

# ``{{ name }}``: Databricks allows no expression inside the braces, only a dotted name.
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
_INHERITED_CREDENTIALS = ("DATABRICKS_", "ARM_")
_REGISTRY_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_TOKEN")
STOP_GRACE_SECONDS = 3.0


class CannotStart(Exception):
    """The task cannot start: a bad reference, a missing file, a process that did not spawn.

    ``code`` is the run's termination code (``TerminationCodeCode``), ``kind`` its type."""

    def __init__(self, message: str, code: str = "INVALID_RUN_CONFIGURATION", kind: str = "CLIENT_ERROR"):
        super().__init__(message)
        self.message, self.code, self.kind = message, code, kind


def reference_values(*, job_id: int, job_name: str, run_id: int, task_key: str, task_run_id: int,
                     start_time_ms: int, trigger: str, parameters: Mapping[str, str]) -> dict[str, str]:
    """The dynamic value references a task of this run may use, by name."""
    from datetime import UTC, datetime

    started = datetime.fromtimestamp(start_time_ms / 1000, tz=UTC)
    values = {
        "job.id": str(job_id), "job.name": job_name, "job.run_id": str(run_id),
        "job.start_time.iso_datetime": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "job.start_time.timestamp_ms": str(start_time_ms), "job.trigger.type": trigger,
        "task.name": task_key, "task.run_id": str(task_run_id),
        "job_id": str(job_id), "run_id": str(task_run_id), "parent_run_id": str(run_id), "task_key": task_key,
    }
    values.update({f"job.parameters.{name}": value for name, value in parameters.items()})
    return values


def resolve(parameters: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``parameters`` with every ``{{reference}}`` replaced; an unknown one raises CannotStart."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise CannotStart(f"Invalid dynamic value reference {match.group(0)}: {name} is not defined for this run.")
        return values[name]

    return [_REFERENCE.sub(replace, str(p)) for p in parameters]


def script_path(python_file: str, cwd: Path) -> Path:
    """The local file a ``python_file`` names; CannotStart when there is none."""
    parsed = urlsplit(python_file)
    text = unquote(parsed.path) if parsed.scheme == "file" else python_file
    path = Path(text)
    if not path.is_absolute():
        path = cwd / path
    if not path.is_file():
        raise CannotStart(f"The Python file {python_file} does not exist.", code="RESOURCE_NOT_FOUND")
    return path


def child_environment(base: Mapping[str, str], *, host: str, token: str, registry_uri: str) -> dict[str, str]:
    """The process environment of a task: ``base`` without inherited credentials, plus the run's."""
    env = {k: v for k, v in base.items()
           if not k.startswith(_INHERITED_CREDENTIALS) and k not in _REGISTRY_VARIABLES}
    env.update(DATABRICKS_HOST=host, DATABRICKS_TOKEN=token, MLFLOW_TRACKING_URI=registry_uri,
               MLFLOW_REGISTRY_URI=registry_uri)
    return env


def log_files(log_dir: Path) -> tuple[Path, Path]:
    """Where a task's stdout and stderr go: ``log_dir/stdout.log``, ``log_dir/stderr.log``."""
    return log_dir / "stdout.log", log_dir / "stderr.log"


class TaskProcess:
    """A started task process, its output in ``log_files(log_dir)``."""

    def __init__(self, script: Path, arguments: Sequence[str], env: Mapping[str, str], cwd: Path, log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = log_files(log_dir)
        try:
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self._proc = subprocess.Popen(
                    [sys.executable, str(script), *arguments], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env=dict(env), cwd=str(cwd), start_new_session=True)
        except OSError as exc:
            raise CannotStart(f"The Python process could not start: {exc}", code="INTERNAL_ERROR",
                              kind="INTERNAL_ERROR") from exc

    @property
    def pid(self) -> int:
        return self._proc.pid

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process still runs after ``timeout`` seconds."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace_seconds``; returns once it has exited."""
        for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, None)):
            if self._proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)
            if self.wait(wait if wait is not None else 30) is not None:
                break
        self.reap()

    def reap(self) -> None:
        """End whatever the exited process started and left behind in its session's group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)


def tail(path: Path, max_chars: int) -> str:
    """The last ``max_chars`` characters of a log file, cut at a line start when possible."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - max_chars * 4, 0))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    text = text[-max_chars:]
    newline = text.find("\n")
    return text[newline + 1:] if 0 <= newline < len(text) - 1 else text


def logs(paths: Sequence[Path], max_bytes: int) -> tuple[str, bool]:
    """stdout then stderr, the last ``max_bytes`` of them, and whether that cut anything."""
    data = b""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            data += path.read_bytes()
    truncated = len(data) > max_bytes
    return data[-max_bytes:].decode("utf-8", errors="replace"), truncated
