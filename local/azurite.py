"""Azurite, the Azure Storage emulator, run as a child process on free loopback ports.

Started as Microsoft Learn, "Use the Azurite emulator for local Azure Storage development"
(https://learn.microsoft.com/en-us/azure/storage/common/storage-use-azurite) describes: in memory, telemetry off,
``--skipApiVersionCheck`` because azure-storage-queue 12.18 speaks a newer API version than
Azurite 3.35 (the last release for Node 20) knows. ``./dev`` installs it from
``local/azurite/package.json``. Used by the storage contract tests, the Azure scenario tests,
the webhook benchmark and ``./dev demo --storage azurite``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from shared.connections import development_storage

BIN = Path(__file__).resolve().parent / "azurite" / "node_modules" / ".bin" / "azurite"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Azurite:
    """``with Azurite() as az: az.connection_string`` — blob, queue and table services."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._err: IO[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return development_storage(blob=self.ports["blob"], queue=self.ports["queue"], table=self.ports["table"])

    def start(self) -> Azurite:
        if not BIN.exists():
            raise RuntimeError(f"Azurite is not installed at {BIN}: run ./dev (it installs local/azurite with npm)")
        for attempt in range(3):  # a free port can be taken between the probe and Azurite's bind
            self.ports = {name: _free_port() for name in ("blob", "queue", "table")}
            args = [str(BIN), "--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck"]
            for name, port in self.ports.items():
                args += [f"--{name}Host", "127.0.0.1", f"--{name}Port", str(port)]
            # A file, not a pipe: nobody reads Azurite's output while it runs, and a full pipe would stall it.
            self._err = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._err)
            if self._wait_ready():
                return self
            err = self._stop_process()
            if attempt == 2:
                raise RuntimeError(f"Azurite did not start: {err.strip()[-500:]}")
        return self

    def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        pending = set(self.ports.values())
        while pending and time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pending.discard(port)
            if pending:
                time.sleep(0.05)
        return not pending

    def _stop_process(self) -> str:
        proc, self._proc = self._proc, None
        if proc is None:
            return ""
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._err is None:
            return ""
        with self._err as log:
            log.seek(0)
            return log.read().decode(errors="replace")

    def stop(self) -> None:
        self._stop_process()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
