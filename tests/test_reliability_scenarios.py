"""Storms and crashes through the real stack: the function_app on the local host, the real
databricks-sdk against the local workspace, a real MLflow server as the registry.

Which request wins when an explicit ``deploy`` and a ``reconcile`` interleave: the newest
request takes the endpoint's queued slot and an older queued rollout ends ``superseded``;
a request for a version that is already rolling out joins that rollout. Desired state stays
the truth: the next reconcile (the watcher's, or anyone's) brings the policy's version back.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from local.stack import WEBHOOK_SECRET, WORKSPACE_TOKEN, app_settings
from shared import journal, rollouts
from shared.queues import COMMANDS_QUEUE, enqueue
from shared.settings import APP_ROOT
from shared.signatures import mlflow_signature
from shared.storage import open_queues, open_tables
from tests.conftest import NEVER, policy_yaml


def _open(tables, endpoint: str) -> list[str]:
    recs = [f"{r['key']}={r['status']}" for r in journal.list_records(tables) if r["status"] not in journal.TERMINAL]
    rows = [f"{r['id']}={r['status']}" for r in rollouts.for_endpoint(tables, endpoint)
            if r["status"] not in rollouts.TERMINAL]
    return recs + rows


def test_a_storm_of_deliveries_and_commands_gives_one_rollout_per_version(make_app):
    app = make_app()
    versions = [app.register() for _ in range(5)]
    latest = versions[-1]
    jobs: list[tuple[str, object]] = []
    for v in versions:
        body = app.webhook_body(v)
        first = f"delivery-{v}-{uuid.uuid4().hex[:6]}"
        jobs += [("hook", (body, first)), ("hook", (body, first)), ("hook", (body, None)), ("hook", (body, None))]
    jobs += [("command", {"command": "reconcile", "model": app.model})] * 4
    jobs += [("command", {"command": "deploy", "model": app.model, "environment": "prod", "version": latest})] * 2
    random.Random(5).shuffle(jobs)
    answers: list[int] = []
    lock = threading.Lock()

    def send(job: tuple[str, object]) -> None:
        kind, what = job
        if kind == "command":
            enqueue(app.queues, COMMANDS_QUEUE, what)
            return
        body, delivery = what  # type: ignore[misc]
        status = app.post_webhook(body, delivery=delivery).status_code
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=lambda part=jobs[i::8]: [send(j) for j in part]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers and all(s == 202 for s in answers), answers
    app.wait(lambda: not _open(app.tables, app.endpoint), timeout=120, what="every record and rollout to end")
    done = [r["version"] for r in app.rollouts() if r["status"] == "done"]
    assert len(done) == len(set(done)), app.rollouts()
    enqueue(app.queues, COMMANDS_QUEUE, {"command": "reconcile", "model": app.model})
    app.wait(lambda: not _open(app.tables, app.endpoint) and app.host.wait_idle(5), timeout=60, what="the reconcile")
    assert app.serving() == [latest] and app.champion() == latest
    assert app.w.serving_endpoints.get(app.endpoint).state.ready.value == "READY"
    # Each distinct event has one record; repeated deliveries were answered "duplicate".
    assert len(app.records("event")) == len(versions)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HostProcess:
    """``python -m local.host`` in its own process, so that it can be killed with SIGKILL."""

    def __init__(self, settings: dict[str, str], log: Path) -> None:
        self.settings, self.log, self.port = settings, log, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **self.settings}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "local.host", "--app-dir", str(APP_ROOT),
                                          "--port", str(self.port), "--log-level", "WARNING"],
                                         cwd=APP_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the host did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def _deliver(host: HostProcess, body: bytes) -> None:
    """As MLflow does: retry until the app answers below 500 (it may be down just now)."""
    delivery = str(uuid.uuid4())
    for _ in range(100):
        stamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery,
                   "X-MLflow-Timestamp": stamp, "X-MLflow-Signature": mlflow_signature(WEBHOOK_SECRET, delivery,
                                                                                       stamp, body)}
        try:
            answer = requests.post(f"{host.url}/api/registry/webhook", data=body, headers=headers, timeout=10)
            if answer.status_code < 500:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError("the webhook was never accepted")


def test_a_host_killed_at_random_moments_leaves_nothing_open(plat, tmp_path):
    """SIGKILL at random moments during 4 rollouts, restarting on the same store each time:
    every accepted event and command ends within 2 minutes of the last restart, no version is
    rolled out twice, and one more reconcile serves the newest version."""
    from local.taxi import train_and_register

    tag = uuid.uuid4().hex[:8]
    model, endpoint = f"taxi_{tag}", f"taxi-{tag}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml(model, endpoint))
    settings = app_settings(data_dir=tmp_path, policy=policy, mlflow_url=plat.mlflow.url,
                            workspace_url=plat.workspace.url, watch_schedule=NEVER, repair_schedule="*/2 * * * * *")
    settings.update({"COMMAND_CLAIM_SECONDS": "10", "REPAIR_GRACE_SECONDS": "5"})
    tables = open_tables(settings["REACTOR_STORAGE"])
    host = HostProcess(settings, tmp_path / "host.log")
    rng = random.Random(20)
    kills = 0
    plat.workspace.faults.provisioning_seconds = 1.5
    try:
        host.start()
        for n in range(4):
            v = train_and_register(plat.mlflow.url, model_name=model, seed=n, n=300)
            body = json.dumps({"entity": "model_version", "action": "created", "timestamp": f"t-{v}",
                               "data": {"name": model, "version": v}}).encode()
            _deliver(host, body)
            for _ in range(2):
                time.sleep(rng.uniform(0.1, 1.5))
                host.kill()
                kills += 1
                host.start()
        restarted = time.monotonic()
        deadline = restarted + 120
        while _open(tables, endpoint) and time.monotonic() < deadline:
            time.sleep(0.5)
        took = time.monotonic() - restarted
        assert not _open(tables, endpoint), f"still open {took:.0f} s after the last restart: {_open(tables, endpoint)}"
        assert kills == 8
        print(f"every record and rollout ended {took:.1f} s after the last of {kills} restarts")
        rows = rollouts.for_endpoint(tables, endpoint)
        done = [r["version"] for r in rows if r["status"] == "done"]
        assert len(done) == len(set(done)), rows
        enqueue(open_queues(settings["REACTOR_STORAGE"]), COMMANDS_QUEUE, {"command": "reconcile", "model": model})
        deadline = time.monotonic() + 60
        time.sleep(1)
        while _open(tables, endpoint) and time.monotonic() < deadline:
            time.sleep(0.5)
        from databricks.sdk import WorkspaceClient

        ep = WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN).serving_endpoints.get(endpoint)
        assert [e.entity_version for e in ep.config.served_entities] == ["4"], rows
        assert ep.state.ready.value == "READY"
    finally:
        plat.workspace.faults.provisioning_seconds = 0.5
        host.stop()
