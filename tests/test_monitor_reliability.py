"""Retraining is launched once, whatever fails: a fault at every storage write and enqueue of a
``retrain`` command (before it takes effect, or after: a timeout that hides a success), duplicate
deliveries, and a cooldown, against the local workspace's real Jobs API.

The host is ``tests.engine.Driver`` (redelivery, poison, the repair sweep, a clock the test
moves); the job is a real process the local workspace runs, so its run ends in real time while
the driver polls it by re-enqueueing, as the app does.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from databricks.sdk import WorkspaceClient

from local.stack import WORKSPACE_TOKEN
from shared import journal
from shared.monitoring import store
from tests.engine import ENDPOINT, MODEL, POLICY, Driver, Faults


@pytest.fixture(scope="module")
def w(plat) -> WorkspaceClient:
    return WorkspaceClient(host=plat.workspace.url, token=WORKSPACE_TOKEN)


def _job(w: WorkspaceClient, tmp: Path) -> int:
    from databricks.sdk.service.jobs import SparkPythonTask, Task

    script = tmp / "train.py"
    script.write_text("import sys\nsys.exit(0)\n")
    return int(w.jobs.create(name="retrain", max_concurrent_runs=1, tasks=[Task(
        task_key="t", spark_python_task=SparkPythonTask(python_file=str(script)))]).job_id)


def _driver(tmp: Path, w: WorkspaceClient, faults: Faults | None = None) -> tuple[Driver, int]:
    d = Driver(tmp, faults)
    job = _job(w, tmp)
    policy = json.loads(json.dumps(POLICY))
    env = policy["models"][0]["environments"]["prod"]
    env.update(retraining={"job_id": job}, inference_table={"catalog": "main", "schema": "mon"},
               monitoring={"checks": [{"metric": "psi", "of": "features", "threshold": 0.2}],
                           "decision": {"cooldown": "1h"}})
    Path(d.deps.settings.policy_file).write_text(json.dumps(policy))
    ns = SimpleNamespace(serving_endpoints=d.serving_api, jobs=w.jobs)
    d.deps.workspace = lambda: ns
    return d, job


def _retrain(d: Driver, key: str = "r-1") -> None:
    d.command({"command": "retrain", "model": MODEL, "environment": "prod", "reason": "test", "id": key})


def _runs(w: WorkspaceClient, job: int) -> list:
    return list(w.jobs.list_runs(job_id=job))


def test_a_retrain_command_launches_one_run_and_follows_it_to_its_end(tmp_path, w):
    d, job = _driver(tmp_path, w)
    _retrain(d)
    _retrain(d)  # a duplicate delivery of the same command
    d.run(horizon=10**6)
    runs = _runs(w, job)
    assert len(runs) == 1 and runs[0].state.result_state.value == "SUCCESS"
    rec = journal.get(d.raw_tables, "command", journal.key("id", "r-1"))
    assert rec["status"] == "done" and rec["run_id"] == runs[0].run_id, rec
    assert any("succeeded" in line for line in rec["outcome"])


def test_a_second_retrain_within_the_cooldown_launches_nothing(tmp_path, w):
    d, job = _driver(tmp_path, w)
    _retrain(d, "r-1")
    d.run(horizon=10**6)
    _retrain(d, "r-2")
    d.run(horizon=10**6)
    assert len(_runs(w, job)) == 1
    second = journal.get(d.raw_tables, "command", journal.key("id", "r-2"))
    assert second["status"] == "done" and second["outcome"][0].startswith("cooldown"), second


@pytest.mark.parametrize("after", [False, True])
def test_a_failure_at_every_storage_write_and_enqueue_still_launches_exactly_one_run(tmp_path, w, after):
    clean, job = _driver(tmp_path / "clean", w)
    _retrain(clean)
    clean.run(horizon=10**6)
    total = clean.faults.count
    assert total >= 4
    for at in range(1, total + 1):
        d, job = _driver(tmp_path / f"{after}-{at}", w, Faults(at=at, after=after))
        _retrain(d)
        d.run(horizon=10**6)
        try:
            runs = _runs(w, job)
            assert len(runs) == 1, runs
            rec = journal.get(d.raw_tables, "command", journal.key("id", "r-1"))
            assert rec is not None and rec["status"] == "done", rec
            assert store.state(d.raw_tables, ENDPOINT).get("last_action_at") is not None
        except AssertionError as exc:
            raise AssertionError(f"fault at write {at} ({d.faults.fired}): {exc}") from exc


def test_a_run_that_fails_is_recorded_with_its_reason(tmp_path, w):
    from databricks.sdk.service.jobs import SparkPythonTask, Task

    d, _ = _driver(tmp_path, w)
    script = tmp_path / "broken.py"
    script.write_text("import sys\nsys.exit('no labelled rows since the window began')\n")
    job = int(w.jobs.create(name="broken", tasks=[Task(task_key="t", spark_python_task=SparkPythonTask(
        python_file=str(script)))]).job_id)
    policy = json.loads(Path(d.deps.settings.policy_file).read_text())
    policy["models"][0]["environments"]["prod"]["retraining"] = {"job_id": job}
    Path(d.deps.settings.policy_file).write_text(json.dumps(policy))
    _retrain(d)
    d.run(horizon=10**6)
    rec = journal.get(d.raw_tables, "command", journal.key("id", "r-1"))
    assert rec["status"] == "failed", rec
    assert "FAILED" in rec["outcome"][0] and "no labelled rows" in rec["outcome"][0], rec


class _LaunchedInBetween:
    """The real Jobs API, where another launcher starts a run of the job right after the app
    found none active: the app's own run then waits behind it."""

    def __init__(self, jobs, job_id: int) -> None:
        self._jobs, self._job_id, self.blocker = jobs, job_id, None

    def __getattr__(self, name: str):
        return getattr(self._jobs, name)

    def list_runs(self, **kw):
        found = list(self._jobs.list_runs(**kw))
        if self.blocker is None:
            self.blocker = self._jobs.run_now(self._job_id).run_id
        return found


def test_a_queued_retraining_run_is_followed_until_it_runs_not_taken_for_failed(tmp_path, w):
    """Jobs created through API 2.2 queue by default ("Updating from Jobs API 2.1 to 2.2",
    https://docs.databricks.com/reference/jobs-api-updates.html): the launched run can be QUEUED,
    which is not terminal; the command waits for it and records its real outcome."""
    from databricks.sdk.service.jobs import SparkPythonTask, Task

    d, _ = _driver(tmp_path, w)
    gate = tmp_path / "gate"
    script = tmp_path / "gated.py"
    script.write_text(f"import os, time\nwhile not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n")
    job = int(w.jobs.create(name="gated", max_concurrent_runs=1, tasks=[Task(
        task_key="t", spark_python_task=SparkPythonTask(python_file=str(script)))]).job_id)
    policy = json.loads(Path(d.deps.settings.policy_file).read_text())
    policy["models"][0]["environments"]["prod"]["retraining"] = {"job_id": job}
    Path(d.deps.settings.policy_file).write_text(json.dumps(policy))
    racing = _LaunchedInBetween(w.jobs, job)
    d.deps.workspace = lambda: SimpleNamespace(serving_endpoints=d.serving_api, jobs=racing)
    try:
        _retrain(d)
        d.run(limit=40, horizon=10**6)
        rec = journal.get(d.raw_tables, "command", journal.key("id", "r-1"))
        assert rec["status"] not in journal.TERMINAL, rec
        assert w.jobs.get_run(rec["run_id"]).state.life_cycle_state.value == "QUEUED"
        assert any(f"run {rec['run_id']} is QUEUED" in line for line in rec["outcome"]), rec
    finally:
        gate.touch()
    d.run(horizon=10**6)
    rec = journal.get(d.raw_tables, "command", journal.key("id", "r-1"))
    assert rec["status"] == "done" and any("succeeded" in line for line in rec["outcome"]), rec
    assert w.jobs.get_run(racing.blocker).state.result_state.value == "SUCCESS"
