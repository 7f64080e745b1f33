"""A storm of webhooks and joining commands on Azure Storage (Azurite), with a counting proxy
between the Function host and the local workspace: every write to the endpoint belongs to a
step that committed, and no step ran twice (shared.rollouts L5).

Each reconcile that finds the version's rollout still pending joins it and sends its current
step again; with the host's queue batches running those messages side by side, the step claim
is what keeps one worker per step. The proxy sees every request the app makes to Model Serving;
the rollout rows' history says which steps committed and which of them wrote.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from shared import journal, rollouts
from shared.queues import COMMANDS_QUEUE, enqueue

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A committed step's note when it wrote the endpoint's config (handlers/rollout.py).
_WROTE = (("deploy", ("created endpoint", "updated endpoint")), ("shift", ("shifting",)),
          ("retire", ("removing versions",)), ("rollback", ("restoring", "deleting")))


class CountingProxy:
    """Forwards every request to the workspace and keeps (method, path, status) of each write
    to a serving endpoint (queries, ``.../invocations``, are reads of the model, not writes)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.writes: list[tuple[str, str, int]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                got = requests.request(self.command, proxy.upstream + self.path, data=body or None, headers=headers,
                                       timeout=60)
                if (self.command in _WRITES and "/serving-endpoints" in self.path
                        and not self.path.rstrip("/").endswith("/invocations")):
                    with lock:
                        proxy.writes.append((self.command, self.path, got.status_code))
                self.send_response(got.status_code)
                self.send_header("Content-Type", got.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(got.content)))
                self.end_headers()
                self.wfile.write(got.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(plat) -> Iterator[CountingProxy]:
    with CountingProxy(plat.workspace.url) as p:
        yield p


def _storm(app: Any, version: str) -> None:
    """50 webhooks for ``version`` (some deliveries repeated) and 20 reconciles, from 8 threads."""
    body = app.webhook_body(version)
    deliveries = [f"d-{version}-{uuid.uuid4().hex[:6]}" for _ in range(10)]
    jobs: list[tuple[str, str | None]] = [("hook", random.Random(i).choice(deliveries)) for i in range(40)]
    jobs += [("hook", None)] * 10 + [("reconcile", None)] * 20
    random.Random(16).shuffle(jobs)

    def send(part: list[tuple[str, str | None]]) -> None:
        for kind, delivery in part:
            if kind == "reconcile":
                enqueue(app.queues, COMMANDS_QUEUE, {"command": "reconcile", "model": app.model})
            else:
                assert app.post_webhook(body, delivery=delivery).status_code == 202

    threads = [threading.Thread(target=send, args=(jobs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _quiet(app: Any, since: float) -> bool:
    # The session's Azurite is shared: records other tests left open are not this storm's.
    open_records = [r for r in journal.list_records(app.tables)
                    if r["status"] not in journal.TERMINAL and r.get("received_at", 0) >= since]
    open_rows = [r for r in app.rollouts() if r["status"] not in rollouts.TERMINAL]
    return not open_records and not open_rows and app.host.wait_idle(3)


def _committed_writes(rows: list[dict[str, Any]]) -> list[str]:
    """The committed steps that wrote the endpoint, as ``rollout:step``."""
    wrote = dict(_WROTE)
    return [f"{r['id']}:{h['step']}" for r in rows for h in r.get("history", [])
            if h["step"] in wrote and h["note"].startswith(wrote[h["step"]])]


def test_a_storm_of_joins_writes_the_endpoint_once_per_committed_step(make_app, proxy, caplog):
    caplog.set_level(logging.INFO, logger="reactor")
    app = make_app(storage="azurite", extra_settings={"DATABRICKS_HOST": proxy.url})
    since = time.time()
    for _ in range(2):  # the endpoint created, then updated: shift and retire write too
        v = app.register()
        _storm(app, v)
        app.wait(lambda: _quiet(app, since), timeout=180, what="the storm to settle")
        assert app.serving() == [v]

    writes = list(proxy.writes)
    assert all(200 <= status < 300 for _, _, status in writes), writes  # no 409: no write raced another
    committed = _committed_writes(app.rollouts())
    assert len(writes) == len(committed), (writes, committed)
    assert [m for m, _, _ in writes if m == "POST"] == ["POST"]  # the endpoint created once
    # No step ran without committing: a worker that ran a step and lost its commit says so.
    lost = [r.getMessage() for r in caplog.records if '"rollout.lost_race"' in r.getMessage()]
    assert not lost, lost
    done = [r for r in app.rollouts() if r["status"] == "done"]
    assert sorted(r["version"] for r in done) == sorted(app.registered), [(r["version"], r["status"]) for r in
                                                                           app.rollouts()]
