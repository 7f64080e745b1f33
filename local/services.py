"""The database servers on this machine that online stores use: start one that is down.

PostgreSQL stands in for Lakebase; MariaDB is the third-party (MySQL) online store. The start
commands are the ones this machine's services were started with.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

POSTGRES_URL = os.environ.get("REACTOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("REACTOR_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")


class ServiceUnavailable(RuntimeError):
    pass


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _start(name: str, port: int, command: list[str], timeout: float = 60) -> None:
    if _listening(port):
        return
    if shutil.which(command[0]) is None and not os.path.exists(command[0]):
        raise ServiceUnavailable(f"{name} is not listening on 127.0.0.1:{port} and {command[0]} is not installed")
    subprocess.run(command, check=False, capture_output=True, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(port):
            return
        time.sleep(0.5)
    raise ServiceUnavailable(f"{name} did not start on 127.0.0.1:{port} within {timeout:.0f} s ({' '.join(command)})")


def ensure_postgres() -> str:
    versions = [os.path.basename(p) for p in glob.glob("/etc/postgresql/*")]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0] if versions else "15", "main", "start"]
    _start("PostgreSQL", 5432, command)
    return POSTGRES_URL


def ensure_mariadb() -> str:
    _start("MariaDB", 3306, ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec",
                            "/usr/sbin/mariadbd"])
    return MARIADB_URL


if __name__ == "__main__":
    print(ensure_postgres())
    print(ensure_mariadb())
