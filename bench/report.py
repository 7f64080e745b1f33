"""Where benchmark tables go: stdout, and with ``--write`` the end of docs/benchmarks.md."""

from __future__ import annotations

from shared.settings import APP_ROOT


def emit(table: str, write: bool) -> None:
    print(table)
    if write:
        out = APP_ROOT / "docs" / "benchmarks.md"
        out.parent.mkdir(exist_ok=True)
        with out.open("a") as f:
            f.write("\n" + table)
