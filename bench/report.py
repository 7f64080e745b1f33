"""Where benchmark tables go: stdout, and with ``--write`` the end of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from shared.settings import APP_ROOT


def machine() -> str:
    """When and where a benchmark ran, for its table's heading: the time, cores, memory,
    architecture, Python and the load average at the end of the run."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")


def emit(table: str, write: bool) -> None:
    print(table)
    if write:
        out = APP_ROOT / "docs" / "benchmarks.md"
        out.parent.mkdir(exist_ok=True)
        with out.open("a") as f:
            f.write("\n" + table)
