"""Start and stop a real ``mlflow server`` for local runs and tests.

The server is the stand-in for the model registry that sends MLflow 3 webhooks. It is the
real ``mlflow server`` command (uvicorn + FastAPI app in mlflow 3.17), run as a subprocess in
its own process group, with a SQLite backend store (webhooks need a SQL store) and proxied
artifact serving (clients log and load artifacts through ``mlflow-artifacts:/`` URIs, the
server writes them under ``<data_dir>/artifacts``).

Settings, as read by the installed mlflow (``mlflow/environment_variables.py``,
``mlflow/webhooks/delivery.py``, ``mlflow/store/model_registry/dbmodels/models.py``,
``mlflow/server/__init__.py``):

- ``MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https`` and ``MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true``:
  without them a webhook URL must be ``https`` on a public address, so a receiver on
  127.0.0.1 is refused both at ``create_webhook`` and at delivery.
- ``MLFLOW_WEBHOOK_CACHE_TTL`` (seconds, default 60): the server caches the list of webhooks
  per event in a ``cachetools.TTLCache``. A TTL of 0 makes every entry expire at once, so a
  webhook created a moment ago is used for the next event.
- ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``: webhook secrets are stored Fernet-encrypted. When
  the variable is unset every server process generates its own random key at import, so a
  restarted server (or another worker) cannot decrypt secrets stored before. The key is
  therefore generated once per ``data_dir`` and kept in ``<data_dir>/webhook-secret.key``.
- ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` (default true) makes ``mlflow server`` also start a
  job runner with seven huey consumer processes (GenAI jobs). The registry and webhooks do not
  need them, so they are off unless ``enable_jobs=True``.
- ``MLFLOW_DISABLE_TELEMETRY=true``: no usage telemetry from the server (no internet here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

_LOG_TAIL_CHARS = 4000


class MlflowServerError(RuntimeError):
    """The server did not come up (it exited, or /health did not answer in time)."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group we cannot signal is still there
        return True
    return True


def _load_or_create_fernet_key(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    from cryptography.fernet import Fernet  # a dependency of mlflow's SQL model registry store

    key = Fernet.generate_key().decode("ascii")
    path.write_text(key + "\n")
    with contextlib.suppress(OSError):
        path.chmod(0o600)
    return key


class MlflowServer:
    """A real ``mlflow server`` subprocess bound to 127.0.0.1.

    ``port=0`` picks a free loopback port before starting. (``mlflow server`` must be told its
    port: it hands ``http://host:port`` to its job runner, and with ``--port 0`` we could not
    learn which port uvicorn bound.) If another process grabs the port between the pick and
    the bind, start() notices the early exit and tries a new port, up to three times.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        workers: int = 1,
        webhook_cache_ttl: int = 0,
        enable_jobs: bool = False,
        python: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.requested_port = port
        self.port: int | None = port or None
        self.workers = workers
        self.webhook_cache_ttl = webhook_cache_ttl
        self.enable_jobs = enable_jobs
        self.python = python or sys.executable
        self.extra_env = dict(extra_env or {})
        self.log_path = self.data_dir / "mlflow-server.log"
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file = None
        self._log_offset = 0

    # -- properties -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise MlflowServerError("the server has no port yet: call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- command and environment ----------------------------------------------------------
    def command(self) -> list[str]:
        if self.port is None:
            raise MlflowServerError("no port chosen")
        return [
            self.python,
            "-m",
            "mlflow",
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_store_uri,
            # --serve-artifacts is the default: the default artifact root becomes
            # mlflow-artifacts:/ and the server stores the files here.
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts_dir),
        ]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The client side of this process must not leak into the server.
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            env.pop(name, None)
        env.update(
            {
                "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
                "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
                "MLFLOW_WEBHOOK_CACHE_TTL": str(self.webhook_cache_ttl),
                "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": _load_or_create_fernet_key(
                    self.data_dir / "webhook-secret.key"
                ),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if self.enable_jobs else "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> MlflowServer:
        """Start the server and wait until ``GET /health`` answers 200.

        Raises MlflowServerError with the tail of the server log if the process exits or
        the deadline passes; the process group is stopped in both cases.
        """
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        deadline = began + timeout
        attempts = 3 if self.requested_port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self.requested_port == 0:
                self.port = _free_port(self.host)
            self._spawn()
            try:
                self._wait_healthy(deadline)
            except MlflowServerError as exc:
                exited = self._proc is not None and self._proc.poll() is not None
                self.stop()
                port_taken = "address already in use" in self._log_since_spawn().lower()
                if exited and port_taken and attempt < attempts and time.monotonic() < deadline:
                    continue
                raise MlflowServerError(f"{exc}\n--- tail of {self.log_path} ---\n{self.log_tail()}") from None
            self.start_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start port {self.port}\n".encode())
        self._log_file.flush()
        self._log_offset = self._log_file.tell()
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session, hence own process group (pgid == pid)
        )

    def _wait_healthy(self, deadline: float) -> None:
        assert self._proc is not None
        health = f"{self.url}/health"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise MlflowServerError(f"mlflow server exited with code {code} before {health} answered")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise MlflowServerError(f"{health} did not answer 200 in time")
            time.sleep(0.2)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the whole process group, wait, then SIGKILL whatever is left."""
        proc = self._proc
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: the child leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Workers and helpers are reparented when the leader exits; wait for the group too.
        while _process_group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _process_group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=5)
            kill_deadline = time.monotonic() + 5
            while _process_group_alive(pgid) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _log_since_spawn(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-chars:].decode("utf-8", "replace")

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MlflowServer({self.data_dir}, port={self.port}, {state})"
