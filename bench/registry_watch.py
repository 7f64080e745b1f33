"""Benchmark: what one registry-watcher tick reads as a model's history grows.

Side by side in one run, against the local stack (an MLflow server, and the local workspace in
front of it serving Unity Catalog's API): a model with 1 version and one with 31, each read as a
steady-state tick does (``shared.registry.newest_version`` from the stored mark, then
``aliases``), on MLflow's registry (``MlflowClient`` on the server; the workspace registry runs
the same search) and on Unity Catalog (``UnityCatalogRegistry`` through the workspace). For
reference, the read the watcher made before (every version: one search, or UC's listing to its
end). For each: HTTP response bytes (every response body the clients read, counted at
``requests``' adapter), versions returned, requests; ratio = 31 versions / 1 version.
Prints a Markdown table; ``--write`` appends it to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests.adapters

from bench.report import emit, machine
from shared.registry import UnityCatalogRegistry, aliases, newest_version

HISTORIES = (1, 31)


class Wire:
    """Response bytes and requests of the HTTP calls to ``url`` made through ``requests`` while
    counting (the local workspace runs in this process: its own calls to the MLflow server behind
    it are not the client's reads)."""

    def __init__(self, url: str) -> None:
        self.url, self.bytes, self.requests = url, 0, 0

    @contextmanager
    def counting(self) -> Iterator[Wire]:
        real = requests.adapters.HTTPAdapter.send

        def send(adapter: Any, request: Any, *args: Any, **kw: Any) -> Any:
            response = real(adapter, request, *args, **kw)
            if request.url.startswith(self.url):
                self.bytes += len(response.content)
                self.requests += 1
            return response

        requests.adapters.HTTPAdapter.send = send
        try:
            yield self
        finally:
            requests.adapters.HTTPAdapter.send = real


def measure(url: str, read: Callable[[], int]) -> tuple[int, int, int]:
    """(bytes, versions returned, requests to ``url``) of one ``read``, which returns the versions
    it got."""
    wire = Wire(url)
    with wire.counting():
        versions = read()
    return wire.bytes, versions, wire.requests


def _reads(behind: Any, w: Any, name: str, n: int, mlflow_url: str) -> dict[str, tuple[int, int, int]]:
    """One model's reads: a steady-state tick (the mark is the newest version), and before."""
    uc = UnityCatalogRegistry(w)

    def tick(client: Any, known: str | None) -> int:
        newest_version(client, name, known)
        aliases(client, name)
        return 1

    def before_mlflow() -> int:
        found = behind.search_model_versions(f"name='{name}'")
        aliases(behind, name)
        return len(found)

    def before_uc() -> int:
        listed = list(w.model_versions.list(name))  # every page, as the watcher read it before
        aliases(uc, name)
        return len(listed)

    return {
        "MLflow registry: tick (ordered search, 1 result) + aliases": measure(mlflow_url, lambda: tick(behind, None)),
        "MLflow registry, before: every version + aliases": measure(mlflow_url, before_mlflow),
        "Unity Catalog: tick (forward from the mark) + aliases": measure(w.config.host, lambda: tick(uc, str(n))),
        "Unity Catalog, before: the listing + aliases": measure(w.config.host, before_uc),
    }


def run() -> list[tuple[str, dict[int, tuple[int, int, int]]]]:
    from databricks.sdk import WorkspaceClient
    from mlflow import MlflowClient

    from local.stack import WORKSPACE_TOKEN
    from local.stack import platform as local_platform

    rows: dict[str, dict[int, tuple[int, int, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp, local_platform(Path(tmp)) as plat:
        behind = MlflowClient(plat.mlflow.url)
        w = WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)
        for n in HISTORIES:
            name = f"main.models.bench_{uuid.uuid4().hex[:8]}"
            behind.create_registered_model(name)
            for _ in range(n):  # the tags a validated version carries
                behind.create_model_version(name, source="dbfs:/models/x", tags={"validated": "yes", "team": "fares"})
            behind.set_registered_model_alias(name, "Champion", str(n))
            for label, figures in _reads(behind, w, name, n, plat.mlflow.url).items():
                rows.setdefault(label, {})[n] = figures
    return list(rows.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    args = parser.parse_args()
    results = run()
    lines = [f"### Registry watcher tick as the history grows ({machine()}, local MLflow server + local workspace)",
             "",
             "`python -m bench.registry_watch`: one model's reads in one tick; versions = versions returned; "
             "ratio = bytes with 31 versions / bytes with 1.", "",
             "| read | bytes, 1 version | bytes, 31 versions | versions 1 / 31 | requests 1 / 31 | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, by in results:
        (b1, v1, r1), (b31, v31, r31) = by[1], by[31]
        lines.append(f"| {label} | {b1:,} | {b31:,} | {v1} / {v31} | {r1} / {r31} | {b31 / b1:.2f}x |")
    emit("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    main()
