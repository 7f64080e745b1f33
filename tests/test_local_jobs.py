"""The local workspace's Jobs API through the real databricks-sdk (``w.jobs``) over HTTP, with tasks
that run as real processes, and the taxi retraining job registering a real MLflow version.

Runs are followed by polling ``get_run`` here, in the test; the app never waits on a run.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, OperationFailed, ResourceDoesNotExist, Unauthenticated
from databricks.sdk.service.jobs import (
    JobParameterDefinition,
    JobSettings,
    NotebookTask,
    QueueSettings,
    Run,
    SparkPythonTask,
    Task,
    TaskDependency,
)

from local.identity import ManagedIdentityEndpoint
from local.workspace import LocalWorkspace
from local.workspace.server import AZURE_DATABRICKS_RESOURCE

TOKEN = "jobs-test-token"
TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}

# Task scripts. Each writes what the test needs to see into files named by its arguments.
SCRIPTS = {
    "echo.py": """
import json, os, sys
from databricks.sdk import WorkspaceClient
w = WorkspaceClient()
job_ids = [j.job_id for j in w.jobs.list()]
print(json.dumps({"argv": sys.argv[1:], "host": os.environ["DATABRICKS_HOST"],
                  "tracking": os.environ["MLFLOW_TRACKING_URI"], "registry": os.environ["MLFLOW_REGISTRY_URI"],
                  "token_is_pat": os.environ["DATABRICKS_TOKEN"] == sys.argv[-1], "job_ids": job_ids}))
""",
    "fail.py": """
import sys
print("starting the work")
print("Traceback (most recent call last):", file=sys.stderr)
print("ValueError: the label table is empty", file=sys.stderr)
sys.exit(1)
""",
    "count.py": """
import sys
with open(sys.argv[1], "a") as f:
    f.write("launched\\n")
""",
    "gate.py": """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(os.getpid()))
while not Path(sys.argv[2]).exists():
    time.sleep(0.02)
""",
    "keep_token.py": """
import os, sys
from pathlib import Path
from databricks.sdk import WorkspaceClient
run = WorkspaceClient().jobs.get_run(int(sys.argv[2]))
Path(sys.argv[1]).write_text(os.environ["DATABRICKS_TOKEN"])
print("my run is", run.state.life_cycle_state.value)
""",
}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("job-scripts")
    for name, text in SCRIPTS.items():
        (root / name).write_text(text.lstrip(), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorkspace]:
    root = tmp_path_factory.mktemp("jobs-ws")
    with LocalWorkspace(token=TOKEN, registry_uri=f"sqlite:///{root / 'mlflow.db'}", data_dir=root / "ws") as workspace:
        yield workspace


@pytest.fixture(scope="module")
def w(ws: LocalWorkspace) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=TOKEN)


def python_task(script: Path, *parameters: str, key: str = "main", **extra: Any) -> Task:
    return Task(task_key=key, spark_python_task=SparkPythonTask(python_file=str(script), parameters=list(parameters)),
                **extra)


def follow(w: WorkspaceClient, run_id: int, timeout: float = 60) -> tuple[Run, list[str]]:
    """Poll the run until it is terminal; returns it and the life-cycle states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = w.jobs.get_run(run_id)
        state = run.state.life_cycle_state.value
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in TERMINAL:
            return run, seen
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout} s; states {seen}")


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ---------------------------------------------------------------------- jobs
def test_create_get_list_update_reset_delete(w: WorkspaceClient, scripts: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    first = w.jobs.create(name=f"first-{tag}", tasks=[python_task(scripts / "count.py", "x")],
                          parameters=[JobParameterDefinition(name="who", default="nobody")])
    second = w.jobs.create(name=f"second-{tag}", tasks=[python_task(scripts / "count.py", "y")])
    job = w.jobs.get(first.job_id)
    assert job.job_id == first.job_id and job.creator_user_name and job.created_time > 0
    assert job.settings.name == f"first-{tag}" and job.settings.max_concurrent_runs == 1
    assert job.settings.tasks[0].spark_python_task.parameters == ["x"]
    assert [(p.name, p.default) for p in job.settings.parameters] == [("who", "nobody")]

    listed = [j for j in w.jobs.list(limit=1) if j.settings.name.endswith(tag)]  # one per page: the SDK pages
    assert [j.job_id for j in listed] == [second.job_id, first.job_id]  # newest first
    assert not listed[0].settings.tasks  # tasks only with expand_tasks
    named = list(w.jobs.list(name=f"FIRST-{tag}", expand_tasks=True))
    assert [j.job_id for j in named] == [first.job_id] and named[0].settings.tasks[0].task_key == "main"

    w.jobs.update(first.job_id, new_settings=JobSettings(
        max_concurrent_runs=3, tasks=[python_task(scripts / "count.py", "z", key="extra")]))
    updated = w.jobs.get(first.job_id).settings
    assert updated.max_concurrent_runs == 3 and updated.name == f"first-{tag}"
    assert [t.task_key for t in updated.tasks] == ["main", "extra"]  # arrays merge by task_key
    w.jobs.update(first.job_id, fields_to_remove=["tasks/extra", "parameters"])
    assert [t.task_key for t in w.jobs.get(first.job_id).settings.tasks] == ["main"]
    assert not w.jobs.get(first.job_id).settings.parameters
    w.jobs.reset(first.job_id, JobSettings(name=f"reset-{tag}", tasks=[python_task(scripts / "fail.py")]))
    reset = w.jobs.get(first.job_id).settings
    assert reset.name == f"reset-{tag}" and reset.max_concurrent_runs == 1  # everything else back to defaults

    w.jobs.delete(second.job_id)
    with pytest.raises(ResourceDoesNotExist, match=f"^Job {second.job_id} does not exist.$"):
        w.jobs.get(second.job_id)


def test_invalid_job_settings_are_refused(w: WorkspaceClient, scripts: Path) -> None:
    with pytest.raises(InvalidParameterValue, match="spark_python_task"):
        w.jobs.create(name="notebook", tasks=[Task(task_key="n", notebook_task=NotebookTask(notebook_path="/x"))])
    with pytest.raises(InvalidParameterValue, match="max_concurrent_runs"):
        w.jobs.create(name="many", max_concurrent_runs=1001, tasks=[python_task(scripts / "count.py")])
    with pytest.raises(InvalidParameterValue, match="depends on"):
        w.jobs.create(name="deps", tasks=[python_task(scripts / "count.py", depends_on=[TaskDependency("nope")])])
    with pytest.raises(InvalidParameterValue, match="cycle"):
        w.jobs.create(name="cycle", tasks=[
            python_task(scripts / "count.py", key="a", depends_on=[TaskDependency("b")]),
            python_task(scripts / "count.py", key="b", depends_on=[TaskDependency("a")])])


# ---------------------------------------------------------------------- runs
def test_run_now_runs_the_file_with_job_parameters_and_the_runs_credentials(
        ws: LocalWorkspace, w: WorkspaceClient, scripts: Path) -> None:
    job = w.jobs.create(name="echo", tasks=[python_task(
        scripts / "echo.py", "--day", "{{job.parameters.day}}", "--region", "{{job.parameters.region}}",
        "--run", "{{job.run_id}}", TOKEN)],
        parameters=[JobParameterDefinition(name="day", default="monday"),
                    JobParameterDefinition(name="region", default="west")])
    waiter = w.jobs.run_now(job.job_id, job_parameters={"day": "friday"})
    assert waiter.response.number_in_job == waiter.run_id
    run, seen = follow(w, waiter.run_id)
    assert seen[0] in ("PENDING", "RUNNING") and "RUNNING" in seen and seen[-1] == "TERMINATED"
    assert run.state.result_state.value == "SUCCESS" and run.state.state_message == ""
    assert run.status.state.value == "TERMINATED" and run.status.termination_details.code.value == "SUCCESS"
    assert run.job_id == job.job_id and run.run_type.value == "JOB_RUN" and run.trigger.value == "ONE_TIME"
    assert 0 < run.start_time <= run.end_time and run.run_duration >= run.execution_duration > 0
    assert run.run_page_url == f"{ws.url}/#job/{job.job_id}/run/{run.run_id}"
    assert {(p.name, p.default, p.value) for p in run.job_parameters} == {("day", "monday", "friday"),
                                                                          ("region", "west", "west")}
    task = run.tasks[0]
    assert task.state.result_state.value == "SUCCESS" and task.run_id != run.run_id
    assert run.next_page_token is None
    raw = w.api_client.do("GET", "/api/2.2/jobs/runs/get", query={"run_id": run.run_id})
    assert "next_page_token" not in raw  # JobsExt.get_run loops while a token is not None

    output = w.jobs.get_run_output(task.run_id)
    seen_by_task = json.loads(output.logs.strip().splitlines()[-1])
    assert seen_by_task["argv"] == ["--day", "friday", "--region", "west", "--run", str(run.run_id), TOKEN]
    assert seen_by_task["host"] == ws.url and job.job_id in seen_by_task["job_ids"]
    assert seen_by_task["tracking"] == seen_by_task["registry"] == ws.registry_uri
    assert seen_by_task["token_is_pat"] is False  # the run called the workspace with its own token
    assert output.error is None and output.metadata.run_id == task.run_id
    assert w.jobs.get_run_output(run.run_id).logs == output.logs  # one task: the job run answers too
    resolved = w.jobs.get_run(run.run_id, include_resolved_values=True).tasks[0].resolved_values
    assert resolved.spark_python_task.parameters == seen_by_task["argv"]

    with pytest.raises(InvalidParameterValue, match="not defined"):
        w.jobs.run_now(job.job_id, job_parameters={"month": "may"})


def test_a_failing_script_fails_the_run_with_the_tail_of_stderr(w: WorkspaceClient, scripts: Path) -> None:
    job = w.jobs.create(name="fail", tasks=[python_task(scripts / "fail.py")])
    run = w.jobs.run_now_and_wait(job.job_id)  # TERMINATED + FAILED is "done" for the waiter
    assert run.state.life_cycle_state.value == "TERMINATED" and run.state.result_state.value == "FAILED"
    assert run.state.state_message.endswith("ValueError: the label table is empty")
    assert run.status.termination_details.code.value == "RUN_EXECUTION_ERROR"
    assert run.status.termination_details.type.value == "CLIENT_ERROR"
    output = w.jobs.get_run_output(run.tasks[0].run_id)
    assert output.error == run.state.state_message
    assert "Traceback" in output.error_trace and "starting the work" in output.logs


def test_a_task_that_cannot_start_is_an_internal_error(w: WorkspaceClient, scripts: Path) -> None:
    missing = w.jobs.create(name="missing", tasks=[python_task(scripts / "no-such-file.py")])
    with pytest.raises(OperationFailed, match="does not exist"):  # INTERNAL_ERROR is the waiter's failure
        w.jobs.run_now_and_wait(missing.job_id)
    run = next(iter(w.jobs.list_runs(job_id=missing.job_id)))
    assert run.state.life_cycle_state.value == "INTERNAL_ERROR" and run.state.result_state.value == "FAILED"
    assert run.status.termination_details.code.value == "RESOURCE_NOT_FOUND"

    bad_reference = w.jobs.create(name="ref", tasks=[python_task(scripts / "count.py", "{{job.parameters.nope}}")])
    run, _ = follow(w, w.jobs.run_now(bad_reference.job_id).run_id)
    assert run.state.life_cycle_state.value == "INTERNAL_ERROR"
    assert "{{job.parameters.nope}}" in run.state.state_message


def test_an_idempotency_token_launches_one_run(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    marker = tmp_path / "launches.txt"
    job = w.jobs.create(name="once", max_concurrent_runs=5, tasks=[python_task(scripts / "count.py", str(marker))])
    token = f"decision-{uuid.uuid4()}"
    first = w.jobs.run_now(job.job_id, idempotency_token=token)
    again = w.jobs.run_now(job.job_id, idempotency_token=token)
    assert (again.run_id, again.response.number_in_job) == (first.run_id, first.response.number_in_job)
    follow(w, first.run_id)
    third = w.jobs.run_now(job.job_id, idempotency_token=token)  # also once the run has ended
    assert third.run_id == first.run_id
    assert marker.read_text().splitlines() == ["launched"]
    assert [r.run_id for r in w.jobs.list_runs(job_id=job.job_id)] == [first.run_id]
    with pytest.raises(InvalidParameterValue, match="64"):
        w.jobs.run_now(job.job_id, idempotency_token="x" * 65)


def test_jobs_created_through_api_2_2_queue_by_default_and_through_2_1_do_not(w: WorkspaceClient, scripts: Path,
                                                                              tmp_path: Path) -> None:
    """"For jobs created with the Jobs API 2.2, queueing is enabled by default"; 2.0 and 2.1 not
    ("Updating from Jobs API 2.1 to 2.2", https://docs.databricks.com/reference/jobs-api-updates.html)."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    task = python_task(scripts / "gate.py", str(started), str(gate)).as_dict()
    job = w.jobs.create(name="default-2.2", tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
    assert w.jobs.get(job.job_id).settings.queue == QueueSettings(enabled=True)
    old = w.api_client.do("POST", "/api/2.1/jobs/create", body={"name": "default-2.1", "tasks": [task]})["job_id"]
    assert w.jobs.get(old).settings.queue is None
    off = w.jobs.create(name="off-2.2", queue=QueueSettings(enabled=False), tasks=[python_task(scripts / "count.py")])
    assert w.jobs.get(off.job_id).settings.queue == QueueSettings(enabled=False)
    first = w.jobs.run_now(job.job_id).run_id
    wait_for(started.exists, what="the first run's process")
    second = w.jobs.run_now(job.job_id).run_id
    assert w.jobs.get_run(second).state.life_cycle_state.value == "QUEUED"
    assert w.jobs.run_now(old).run_id  # the 2.1 job's own first run takes its slot
    wait_for(lambda: w.jobs.list_runs(job_id=old, active_only=True), what="the 2.1 job's run")
    third = w.jobs.run_now(old).run_id
    assert w.jobs.get_run(third).state.life_cycle_state.value == "SKIPPED"
    gate.touch()
    assert follow(w, first)[0].state.result_state.value == "SUCCESS"
    assert follow(w, second)[0].state.result_state.value == "SUCCESS"
    for run in w.jobs.list_runs(job_id=old):
        follow(w, run.run_id)


def test_a_run_beyond_max_concurrent_runs_is_skipped(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    job = w.jobs.create(name="single", queue=QueueSettings(enabled=False),
                        tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
    first = w.jobs.run_now(job.job_id).run_id
    wait_for(started.exists, what="the first run's process")
    second = w.jobs.run_now(job.job_id).run_id
    skipped = w.jobs.get_run(second)
    assert skipped.state.life_cycle_state.value == "SKIPPED"
    assert skipped.state.result_state.value == "MAXIMUM_CONCURRENT_RUNS_REACHED"
    assert "maximum concurrent runs" in skipped.state.state_message
    assert skipped.status.state.value == "TERMINATED"
    assert skipped.status.termination_details.code.value == "MAX_CONCURRENT_RUNS_EXCEEDED"
    assert w.jobs.run_now_and_wait(job.job_id).state.life_cycle_state.value == "SKIPPED"  # the waiter's target

    active = list(w.jobs.list_runs(job_id=job.job_id, active_only=True))
    assert [r.run_id for r in active] == [first]
    completed = [r.run_id for r in w.jobs.list_runs(job_id=job.job_id, completed_only=True)]
    assert second in completed and first not in completed
    with pytest.raises(InvalidParameterValue):
        list(w.jobs.list_runs(job_id=job.job_id, active_only=True, completed_only=True))
    gate.touch()
    assert follow(w, first)[0].state.result_state.value == "SUCCESS"
    assert not list(w.jobs.list_runs(job_id=job.job_id, active_only=True))


def test_with_queueing_a_run_waits_for_a_free_slot(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    job = w.jobs.create(name="queued", queue=QueueSettings(enabled=True),
                        tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
    first = w.jobs.run_now(job.job_id).run_id
    wait_for(started.exists, what="the first run's process")
    started.unlink()
    second = w.jobs.run_now(job.job_id).run_id
    queued = w.jobs.get_run(second)
    assert queued.state.life_cycle_state.value == "QUEUED" and queued.state.result_state is None
    assert queued.status.state.value == "QUEUED"
    assert queued.status.queue_details.code.value == "MAX_CONCURRENT_RUNS_REACHED"
    assert {r.run_id for r in w.jobs.list_runs(job_id=job.job_id, active_only=True)} == {first, second}
    assert not started.exists()  # the queued run has no process yet
    gate.touch()
    assert follow(w, first)[0].state.result_state.value == "SUCCESS"
    run, _ = follow(w, second)
    assert run.state.result_state.value == "SUCCESS" and run.queue_duration > 0
    assert started.exists()


def test_cancel_stops_the_process_and_ends_the_run_canceled(w: WorkspaceClient, scripts: Path, tmp_path: Path):
    started, gate = tmp_path / "started", tmp_path / "never"
    job = w.jobs.create(name="cancel", tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
    run_id = w.jobs.run_now(job.job_id).run_id
    pid = int(wait_for(lambda: started.exists() and started.read_text(), what="the process"))
    assert alive(pid)
    w.jobs.cancel_run(run_id)
    run, _ = follow(w, run_id)
    assert run.state.life_cycle_state.value == "TERMINATED" and run.state.result_state.value == "CANCELED"
    assert run.state.user_cancelled_or_timedout is True
    assert run.status.termination_details.code.value == "USER_CANCELED"
    assert not alive(pid)
    w.jobs.cancel_run(run_id)  # a finished run is left as it is
    assert w.jobs.get_run(run_id).state.result_state.value == "CANCELED"


def test_a_run_past_the_jobs_timeout_ends_timedout(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    job = w.jobs.create(name="slow", timeout_seconds=1,
                        tasks=[python_task(scripts / "gate.py", str(started), str(tmp_path / "never"))])
    run, _ = follow(w, w.jobs.run_now(job.job_id).run_id)
    assert run.state.life_cycle_state.value == "TERMINATED" and run.state.result_state.value == "TIMEDOUT"
    assert run.state.user_cancelled_or_timedout is True
    assert not alive(int(started.read_text()))


def test_unknown_jobs_and_runs_raise_as_the_sdk_maps_them(w: WorkspaceClient) -> None:
    missing = 987654321
    with pytest.raises(ResourceDoesNotExist, match=f"^Job {missing} does not exist.$"):
        w.jobs.get(missing)
    with pytest.raises(InvalidParameterValue, match=f"^Job {missing} does not exist.$"):  # no override
        w.jobs.run_now(missing)
    with pytest.raises(ResourceDoesNotExist, match=f"^Run {missing} does not exist.$"):
        w.jobs.get_run(missing)
    with pytest.raises(ResourceDoesNotExist, match=f"^Run {missing} does not exist.$"):
        w.jobs.get_run_output(missing)
    with pytest.raises(InvalidParameterValue, match=f"^Run {missing} does not exist.$"):
        w.jobs.cancel_run(missing)
    with pytest.raises(InvalidParameterValue, match=f"^Job {missing} does not exist.$"):
        w.jobs.delete(missing)


def test_list_runs_pages_in_descending_start_time(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    job = w.jobs.create(name="pages", queue=QueueSettings(enabled=False),
                        tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
    ids = [w.jobs.run_now(job.job_id).run_id]
    wait_for(started.exists, what="the first run's process")
    ids += [w.jobs.run_now(job.job_id).run_id for _ in range(4)]  # skipped: one slot
    listed = [r.run_id for r in w.jobs.list_runs(job_id=job.job_id, limit=2)]  # three pages
    assert listed == list(reversed(ids))
    page = w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"job_id": job.job_id, "limit": 2})
    assert page["has_more"] is True and len(page["runs"]) == 2
    last = w.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"job_id": job.job_id, "limit": 2, "offset": 4})
    assert last["has_more"] is False and "next_page_token" not in last and len(last["runs"]) == 1
    assert "tasks" not in page["runs"][0]
    gate.touch()
    follow(w, ids[0])


def test_a_multi_task_run_follows_dependencies(w: WorkspaceClient, scripts: Path, tmp_path: Path) -> None:
    marker = tmp_path / "order.txt"
    job = w.jobs.create(name="dag", tasks=[
        python_task(scripts / "count.py", str(marker), key="after", depends_on=[TaskDependency("fails")]),
        python_task(scripts / "fail.py", key="fails"),
        python_task(scripts / "count.py", str(marker), key="alone")])
    run, _ = follow(w, w.jobs.run_now(job.job_id).run_id)
    results = {t.task_key: t.state.result_state.value for t in run.tasks}
    assert results == {"after": "UPSTREAM_FAILED", "fails": "FAILED", "alone": "SUCCESS"}
    assert run.state.result_state.value == "FAILED" and run.state.state_message.startswith("Task fails failed")
    assert marker.read_text().splitlines() == ["launched"]  # only "alone" ran
    with pytest.raises(InvalidParameterValue, match="multiple tasks"):
        w.jobs.get_run_output(run.run_id)


def test_stopping_ends_the_processes_and_a_restarted_workspace_knows_jobs_and_runs(
        scripts: Path, tmp_path: Path) -> None:
    started, gate = tmp_path / "started", tmp_path / "never"
    args = {"token": TOKEN, "registry_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "data_dir": tmp_path / "ws"}
    first = LocalWorkspace(**args).start()
    try:
        w = WorkspaceClient(host=first.url, token=TOKEN)
        job = w.jobs.create(name="long", queue=QueueSettings(enabled=True),
                            tasks=[python_task(scripts / "gate.py", str(started), str(gate))])
        running = w.jobs.run_now(job.job_id, idempotency_token="restart-1").run_id
        pid = int(wait_for(lambda: started.exists() and started.read_text(), what="the process"))
        queued = w.jobs.run_now(job.job_id).run_id
    finally:
        first.stop()
    assert not alive(pid)  # no orphan

    second = LocalWorkspace(**args).start()
    try:
        w = WorkspaceClient(host=second.url, token=TOKEN)
        assert w.jobs.get(job.job_id).settings.name == "long"
        for run_id, was in ((running, "RUNNING"), (queued, "QUEUED")):
            run = w.jobs.get_run(run_id)
            assert run.state.life_cycle_state.value == "INTERNAL_ERROR" and run.state.result_state.value == "FAILED"
            assert run.state.state_message.startswith(f"The local workspace stopped while the run was {was}")
        assert w.jobs.run_now(job.job_id, idempotency_token="restart-1").run_id == running
        assert w.jobs.create(name="next").job_id > job.job_id  # ids are not handed out twice
    finally:
        second.stop()


def test_in_identity_mode_a_run_calls_with_its_own_token(scripts: Path, tmp_path: Path) -> None:
    """The workspace refuses its PAT in identity mode; the run's own token works while it runs."""
    with ManagedIdentityEndpoint() as idp, LocalWorkspace(
            token=TOKEN, registry_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", data_dir=tmp_path / "ws",
            identity=idp) as ws:
        query = {"api-version": "2019-08-01", "resource": AZURE_DATABRICKS_RESOURCE}
        entra = requests.get(idp.endpoint, params=query, headers={"X-IDENTITY-HEADER": idp.header},
                             timeout=10).json()["access_token"]
        w = WorkspaceClient(host=ws.url, token=entra)
        with pytest.raises(Unauthenticated):
            list(WorkspaceClient(host=ws.url, token=TOKEN).jobs.list())
        kept = tmp_path / "run-token"
        job = w.jobs.create(name="identity", tasks=[python_task(scripts / "keep_token.py", str(kept),
                                                                "{{job.run_id}}")])
        run, _ = follow(w, w.jobs.run_now(job.job_id).run_id)
        assert run.state.result_state.value == "SUCCESS", run.state.state_message
        assert "my run is RUNNING" in w.jobs.get_run_output(run.run_id).logs
        token = kept.read_text()
        assert token not in (TOKEN, entra)
        after = requests.get(f"{ws.url}/api/2.2/jobs/list", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert after.status_code == 401  # the run's token ended with the run


# ---------------------------------------------------------------------- the retraining job
PAYLOAD_COLUMNS = [("databricks_request_id", "string"), ("request_date", "date32"), ("client_request_id", "string"),
                   ("request_time", "timestamp"), ("status_code", "int32"), ("sampling_fraction", "float64"),
                   ("execution_duration_ms", "int64"), ("request", "string"), ("response", "string"),
                   ("logging_error_codes", "list"), ("served_entity_id", "string"), ("requester", "string")]


def payload_table(ws: LocalWorkspace, name: str, requests_: list[tuple[str, datetime, list[dict], int]]) -> None:
    """A Unity Catalog table shaped as an AI Gateway payload table, one row per
    (client_request_id, request_time, records, status_code)."""
    import pyarrow as pa

    types = {"string": pa.string(), "date32": pa.date32(), "timestamp": pa.timestamp("us"), "int32": pa.int32(),
             "float64": pa.float64(), "int64": pa.int64(), "list": pa.list_(pa.string())}
    schema = pa.schema([(n, types[t]) for n, t in PAYLOAD_COLUMNS])
    rows = [{"databricks_request_id": str(uuid.uuid4()), "request_date": at.date(), "client_request_id": rid,
             "request_time": at, "status_code": status, "sampling_fraction": 1.0, "execution_duration_ms": 4,
             "request": json.dumps({"dataframe_records": records}),
             "response": json.dumps({"predictions": [12.5] * len(records)}), "logging_error_codes": [],
             "served_entity_id": "served-entity-1", "requester": "client@example.com"}
            for rid, at, records, status in requests_]
    ws.catalog.create_table(name, pa.Table.from_pylist(rows, schema=schema))


@pytest.fixture(scope="module")
def retraining(plat, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A feature-lookup taxi model (version 1) in the session's MLflow server, its zone tables, and
    labelled requests in a payload table: 60 single-record requests since ``since`` (plus 10 before
    it, one failed request and one of two records), labels keyed by client_request_id with positions."""
    import pyarrow as pa

    from local import taxi
    from local.jobs import retrain_taxi

    tag = uuid.uuid4().hex[:8]
    ws = plat.workspace
    model, schema = f"taxi_retrain_{tag}", f"main.r{tag}"
    pickup_df, dropoff_df = taxi.make_zone_feature_tables(n=2000, seed=5)
    pickup, dropoff = f"{schema}.pickup_zone_features", f"{schema}.dropoff_zone_features"
    ws.catalog.create_table(pickup, pickup_df, primary_keys=["zone_id"])
    ws.catalog.create_table(dropoff, dropoff_df, primary_keys=["zone_id"])
    assert taxi.train_and_register_with_features(plat.mlflow.url, model, pickup, dropoff, pickup_df, dropoff_df,
                                                 n=300) == "1"

    since = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    trips = taxi.make_trips(n=73, seed=11)
    records = json.loads(trips[taxi.REQUEST_COLUMNS].to_json(orient="records"))
    fares = trips[taxi.TARGET].tolist()
    requests_, labels = [], []
    for i in range(70):  # ten before `since`, sixty after
        at = (since + timedelta(minutes=i - 10)).replace(tzinfo=None)
        requests_.append((f"req-{i}", at, [records[i]], 200))
        labels.append((f"req-{i}", 0, fares[i]))
    requests_.append(("req-error", since.replace(tzinfo=None) + timedelta(hours=1), [records[70]], 500))
    labels.append(("req-error", 0, fares[70]))
    requests_.append(("req-pair", since.replace(tzinfo=None) + timedelta(hours=2), records[71:73], 200))
    labels += [("req-pair", 0, fares[71]), ("req-pair", 1, fares[72])]
    payload, label_table = f"{schema}.taxi_payload", f"{schema}.fare_labels"
    payload_table(ws, payload, requests_)
    ws.catalog.create_table(label_table, pa.table({"request_id": [k for k, _, _ in labels],
                                                   "pos": [p for _, p, _ in labels],
                                                   "fare": [f for _, _, f in labels]}))
    w = WorkspaceClient(host=ws.url, token=plat.workspace.token)
    defaults = {"model": model, "payload_table": payload, "label_table": label_table, "label_key": "request_id",
                "label_column": "fare", "since": since.isoformat().replace("+00:00", "Z"), "decision": "none",
                "warehouse_id": "local-warehouse", "min_rows": "40"}
    job = w.jobs.create(**retrain_taxi.job_settings(f"retrain-{tag}", defaults))
    return {"w": w, "job_id": job.job_id, "model": model, "pickup": pickup, "dropoff": dropoff,
            "since": defaults["since"]}


def test_the_retraining_job_registers_a_version_tagged_with_the_decision(plat, retraining) -> None:
    from mlflow import MlflowClient

    w, model = retraining["w"], retraining["model"]
    decision = f"drift-{uuid.uuid4().hex[:8]}"
    run, _ = follow(w, w.jobs.run_now(retraining["job_id"], job_parameters={"decision": decision}).run_id, 300)
    output = w.jobs.get_run_output(run.run_id)
    assert run.state.result_state.value == "SUCCESS", output.error_trace
    assert f"registered {model} version 2" in output.logs

    client = MlflowClient(plat.mlflow.url)
    version = client.get_model_version(model, "2")
    assert version.tags["reactor.decision"] == decision
    # 60 single-record requests since `since`; the failed one and the two-record one are not labelled.
    assert version.tags["reactor.trained_on"] == f"60 labelled rows since {retraining['since']}"
    assert version.tags["reactor.job_run_id"] == str(run.run_id)
    params = client.get_run(version.run_id).data.params
    assert params["rows"] == "60" and params["pickup_table"] == retraining["pickup"]
    assert params["dropoff_table"] == retraining["dropoff"]
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["rmse"] > 0 and metrics["r2"] > 0.5  # a real fit of the fare

    import mlflow.artifacts

    spec_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{client.get_model_version_download_uri(model, '2')}/feature_spec.json",
        tracking_uri=plat.mlflow.url)
    spec = json.loads(Path(spec_dir).read_text())
    assert [lk["table_name"] for lk in spec["lookups"]] == [retraining["pickup"], retraining["dropoff"]]


def test_the_retraining_job_fails_below_min_rows_and_registers_nothing(plat, retraining) -> None:
    from mlflow import MlflowClient

    w, model = retraining["w"], retraining["model"]
    client = MlflowClient(plat.mlflow.url)
    before = {v.version for v in client.search_model_versions(f"name='{model}'")}
    run, _ = follow(w, w.jobs.run_now(retraining["job_id"], job_parameters={
        "min_rows": "1000", "label_position_column": "pos", "decision": "too-few"}).run_id, 300)
    assert run.state.life_cycle_state.value == "TERMINATED" and run.state.result_state.value == "FAILED"
    # With record positions the two-record request is labelled too: 62 rows.
    assert "62 labelled rows" in run.state.state_message and "min_rows is 1000" in run.state.state_message
    assert w.jobs.get_run_output(run.run_id).error == run.state.state_message
    assert {v.version for v in client.search_model_versions(f"name='{model}'")} == before
