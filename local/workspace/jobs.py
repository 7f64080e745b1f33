"""Jobs API 2.2 of the local workspace: jobs whose tasks run local Python files (Databricks REST API,
"Jobs", https://docs.databricks.com/api/workspace/jobs).

``w.jobs`` of databricks-sdk 0.156 works unchanged against it (paths under ``/api/2.2/jobs``; the
same handlers answer ``/api/2.1/jobs``). Wire shapes are the SDK's dataclasses (``JobSettings``,
``Run``, ``RunTask``, ``RunOutput``...). What it does, and where that comes from:

- Jobs: ``create`` (settings normalised through ``JobSettings``; ``max_concurrent_runs`` 0..1000,
  default 1; ``queue`` enabled by default when created through ``/api/2.2``, not through 2.1;
  tasks must be ``spark_python_task`` tasks with unique ``task_key`` and known ``depends_on``;
  ``parameters`` need a ``default``), ``get``, ``list`` (newest first, ``name`` is an
  exact case-insensitive filter, tasks only with ``expand_tasks``, ``limit`` 1..100 default 20),
  ``reset`` (replaces the settings), ``update`` (top-level fields replaced; ``tasks``,
  ``job_clusters``, ``environments`` and ``parameters`` merged by their key, ``fields_to_remove``
  also takes ``tasks/<key>``, SDK docstring) and ``delete`` (its active and queued runs are
  canceled; its runs stay readable [INF]). A missing job is ``400 INVALID_PARAMETER_VALUE "Job 123
  does not exist."``, which the SDK raises as ``ResourceDoesNotExist`` on ``jobs/get`` only.
- ``run-now``: ``job_parameters`` override the defaults of ``JobSettings.parameters`` (an
  undefined name is refused [INF]); ``python_params`` replace the parameters of the Python tasks and
  are refused for a job that defines job parameters [INF]; ``only`` picks tasks; ``queue`` overrides
  the job's queue setting for this run. ``idempotency_token`` (at most 64 characters): the same
  token answers the same ``{run_id, number_in_job}`` and launches nothing; a token whose run was
  deleted is an error. ``number_in_job`` equals ``run_id`` (SDK docstring).
- Concurrency: runs in PENDING, RUNNING or TERMINATING hold a slot. A run beyond
  ``max_concurrent_runs`` is SKIPPED with ``result_state MAXIMUM_CONCURRENT_RUNS_REACHED`` and v2
  ``status`` TERMINATED / ``MAX_CONCURRENT_RUNS_EXCEEDED``; with ``queue.enabled`` it is QUEUED with
  ``status.queue_details.code MAX_CONCURRENT_RUNS_REACHED`` and starts, oldest first, when a slot
  frees (the 48 h queue limit is not enforced). ``max_concurrent_runs 0`` skips every run.
- Run states: QUEUED/PENDING → RUNNING → TERMINATING → TERMINATED with ``result_state``
  SUCCESS, FAILED, TIMEDOUT or CANCELED; a task that cannot start (missing file, bad dynamic value
  reference, no process) ends the run INTERNAL_ERROR with ``result_state FAILED``. ``status`` (v2)
  follows with ``termination_details {code, type, message}``. A task whose upstream failed is
  UPSTREAM_FAILED. ``start_time`` is when the run was created, ``end_time`` 0 until it ends; the
  durations (ms) are filled as the run moves on. ``timeout_seconds`` of the job and of a task
  end a run TIMEDOUT. Retries (``max_retries``) are not emulated.
- Tasks run as real processes (``job_process``): exit code 0 is SUCCESS, anything else FAILED with
  the tail of stderr as ``state_message`` and as ``get-output``'s ``error`` (``error_trace`` holds a
  longer tail, ``logs`` the last 5 MB of stdout then stderr, SDK docstring).
- A run's credentials: each dispatched run gets a token of its own, accepted by the workspace
  (``accepts``; ``server.py`` asks it as well as the PAT or the identity) from dispatch until the run
  ends, so a run calls the workspace in identity mode too, where the PAT is refused.
- ``runs/get`` (the run and its tasks; a task's run id answers that task as a run; never a
  ``next_page_token`` key: ``JobsExt.get_run`` loops while it is not None), ``runs/list`` (``job_id``,
  ``active_only`` = QUEUED,
  PENDING, RUNNING, TERMINATING; ``completed_only``, not both; ``limit`` 1..25 default 20, 0 = 25;
  ``offset`` or ``page_token``; ``start_time_from``/``_to``; descending start time; a token only
  when there is another page), ``runs/cancel`` (asynchronous: SIGTERM, then SIGKILL after 3 s;
  a finished run is left as it is), ``runs/cancel-all``, ``runs/delete`` (not while active) and
  ``runs/get-output`` (a task run, or a job run with one task; several tasks are refused as
  Databricks does [INF: text]). A missing run is ``400 INVALID_PARAMETER_VALUE "Run 123 does not
  exist."`` (→ ``ResourceDoesNotExist`` on ``runs/get`` and ``runs/get-output``).
- Persistence: jobs, runs and idempotency tokens are kept in ``<data_dir>/jobs.json`` (rewritten
  atomically at every change) and task logs under ``<data_dir>/job-runs/<task run id>/``, so a
  restarted workspace knows them; runs that ended more than 60 days before a start are forgotten
  (SDK docstring: "Runs are automatically removed after 60 days"). Run tokens are not kept.
- Stopping the workspace (``join``) ends every process it started: a run active at that moment
  ends INTERNAL_ERROR (``result_state FAILED``, termination ``INTERNAL_ERROR``, "The local workspace
  stopped ..."), the failure of the Jobs service that state stands for; a QUEUED run ends the same
  way. A run found active in ``jobs.json`` at start (the workspace died without stopping) too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service import jobs as sdk

from .errors import invalid_parameter
from .job_process import (
    CannotStart,
    TaskProcess,
    child_environment,
    log_files,
    logs,
    reference_values,
    resolve,
    script_path,
    tail,
)
from .web import Request, Response, Router

log = logging.getLogger("local.workspace.jobs")

QUEUED, PENDING, RUNNING, TERMINATING = "QUEUED", "PENDING", "RUNNING", "TERMINATING"
TERMINATED, SKIPPED, INTERNAL_ERROR = "TERMINATED", "SKIPPED", "INTERNAL_ERROR"
ACTIVE = frozenset({PENDING, RUNNING, TERMINATING})  # hold one of max_concurrent_runs
IN_FLIGHT = ACTIVE | {QUEUED}  # what active_only lists (SDK docstring)
TERMINAL = frozenset({TERMINATED, SKIPPED, INTERNAL_ERROR})
MAX_IDEMPOTENCY_TOKEN = 64
MAX_CONCURRENT_RUNS = 1000
RUNS_PAGE_MAX, JOBS_PAGE_MAX, DEFAULT_PAGE = 25, 100, 20
LOG_BYTES = 5 * 1024 * 1024
MESSAGE_CHARS, TRACE_CHARS = 2000, 64_000
POLL_SECONDS = 0.1
STATE_FILE = "jobs.json"
RETENTION_MS = 60 * 24 * 3600 * 1000  # "Runs are automatically removed after 60 days" (SDK docstring)
TRIGGER = "ONE_TIME"  # what run-now is (TriggerType)
_TASK_KEY = re.compile(r"^[\w\-.]{1,100}$")
_MERGED_ARRAYS = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key",
                  "parameters": "name"}
_TASK_TYPES = {f.name for f in sdk.Task.__dataclass_fields__.values() if f.name.endswith("_task")}
STOPPED_MESSAGE = "The local workspace stopped while the run was {state}; its process was terminated."


def now_ms() -> int:
    return int(time.time() * 1000)


def job_missing(job_id: Any) -> Exception:
    return invalid_parameter(f"Job {job_id} does not exist.")


def run_missing(run_id: Any) -> Exception:
    return invalid_parameter(f"Run {run_id} does not exist.")


@dataclass
class TaskRun:
    """One task of a run; ``state``/``result``/``code``/``kind`` as the run's, for this task."""

    task_key: str
    run_id: int
    task: dict[str, Any]
    state: str = PENDING
    result: str | None = None
    message: str = ""
    code: str | None = None
    kind: str | None = None
    parameters: list[str] | None = None  # resolved, once the task started
    start_time: int = 0
    exec_end: int = 0
    end_time: int = 0
    error: str | None = None
    error_trace: str | None = None
    log_dir: str | None = None
    pid: int | None = None


@dataclass
class JobRun:
    run_id: int
    job_id: int
    run_name: str
    creator: str
    settings: dict[str, Any]  # the job's settings when it was launched
    parameters: list[dict[str, str]]  # [{name, default, value}]
    overriding: dict[str, Any]
    queue_enabled: bool
    start_time: int
    tasks: list[TaskRun]
    idempotency_token: str | None = None
    state: str = PENDING
    result: str | None = None
    message: str = ""
    code: str | None = None
    kind: str | None = None
    queue_reason: str | None = None
    user_cancelled_or_timedout: bool = False
    cancel_requested: bool = False
    dispatched: int = 0  # when it left the queue (or was created PENDING)
    exec_start: int = 0
    exec_end: int = 0
    end_time: int = 0
    deleted: bool = False
    values: dict[str, str] = field(default_factory=dict)  # job parameter values by name

    @staticmethod
    def load(d: dict[str, Any]) -> JobRun:
        tasks = [TaskRun(**t) for t in d.pop("tasks")]
        return JobRun(**d, tasks=tasks)


class JobsService:
    """The Jobs API of one workspace. ``base_url`` gives the workspace URL (once it is serving);
    ``registry_uri`` is what the task processes get as their MLflow tracking and registry URI."""

    def __init__(self, data_dir: Path, *, base_url: Callable[[], str], registry_uri: str, user: str,
                 stopping: threading.Event, cwd: Path | None = None):
        self._path = Path(data_dir) / STATE_FILE
        self._log_root = Path(data_dir) / "job-runs"
        self._base_url = base_url
        self._registry_uri = registry_uri
        self._user = user
        self._stopping = stopping
        self._cwd = Path(cwd or Path.cwd())
        self._lock = threading.RLock()
        self._jobs: dict[int, dict[str, Any]] = {}
        self._runs: dict[int, JobRun] = {}
        self._idempotency: dict[str, int] = {}
        self._next_job_id = 1
        self._next_run_id = 1
        self._run_tokens: dict[str, int] = {}  # sha-256 of a run's token -> run id
        self._tokens_by_run: dict[int, str] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._load()

    # ------------------------------------------------------------------ routes
    def register(self, router: Router) -> None:
        for version in ("2.1", "2.2"):
            p = f"/api/{version}/jobs"
            for method, path, handler in (
                ("POST", "/create", self.create), ("GET", "/get", self.get), ("GET", "/list", self.list),
                ("POST", "/reset", self.reset), ("POST", "/update", self.update), ("POST", "/delete", self.delete),
                ("POST", "/run-now", self.run_now), ("GET", "/runs/get", self.get_run),
                ("GET", "/runs/list", self.list_runs), ("GET", "/runs/get-output", self.get_run_output),
                ("POST", "/runs/cancel", self.cancel_run), ("POST", "/runs/cancel-all", self.cancel_all_runs),
                ("POST", "/runs/delete", self.delete_run),
            ):
                router.add(method, p + path, handler)

    # ------------------------------------------------------------------ credentials of runs
    def accepts(self, token: str) -> bool:
        """Whether ``token`` is the token of a run that is still active."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            return digest in self._run_tokens

    # ------------------------------------------------------------------ jobs
    def create(self, req: Request) -> Response:
        body = req.json()
        body.pop("access_control_list", None)
        settings = _queue_default(req, _normalised(body))
        with self._lock:
            job_id = self._next_job_id
            self._next_job_id += 1
            self._jobs[job_id] = {"job_id": job_id, "created_time": now_ms(), "creator_user_name": self._user,
                                  "run_as_user_name": self._user, "settings": settings}
            self._save()
        return Response(body={"job_id": job_id})

    def get(self, req: Request) -> Response:
        job_id = _int(_query(req, "job_id"), "job_id", required=True)
        with self._lock:
            return Response(body=json.loads(json.dumps(self._job(job_id))))

    def list(self, req: Request) -> Response:
        limit = _limit(_query(req, "limit"), JOBS_PAGE_MAX, zero_is_max=False)
        offset = _offset(req)
        name = _query(req, "name")
        expand = _bool(_query(req, "expand_tasks"), "expand_tasks")
        with self._lock:
            found = [j for j in sorted(self._jobs.values(), key=lambda j: -j["job_id"])
                     if name is None or str(j["settings"].get("name", "")).lower() == name.lower()]
            page = json.loads(json.dumps(found[offset:offset + limit]))
        if not expand:
            for job in page:
                job["settings"].pop("tasks", None)
                job["settings"].pop("job_clusters", None)
        return Response(body=_page("jobs", page, offset, limit, len(found)))

    def reset(self, req: Request) -> Response:
        body = req.json()
        job_id = _int(body.get("job_id"), "job_id", required=True)
        if not isinstance(body.get("new_settings"), dict):
            raise invalid_parameter("new_settings is required: the new settings of the job.")
        settings = _queue_default(req, _normalised(body["new_settings"]))
        with self._lock:
            self._job(job_id)["settings"] = settings
            self._save()
        return Response(body={})

    def update(self, req: Request) -> Response:
        body = req.json()
        job_id = _int(body.get("job_id"), "job_id", required=True)
        new, remove = body.get("new_settings") or {}, body.get("fields_to_remove") or []
        if not isinstance(new, dict) or not isinstance(remove, list):
            raise invalid_parameter("new_settings must be an object and fields_to_remove a list of field names.")
        with self._lock:
            job = self._job(job_id)
            merged = _merge(json.loads(json.dumps(job["settings"])), new, [str(f) for f in remove])
            job["settings"] = _normalised(merged)
            self._save()
        return Response(body={})

    def delete(self, req: Request) -> Response:
        job_id = _int(req.json().get("job_id"), "job_id", required=True)
        with self._lock:
            self._job(job_id)
            del self._jobs[job_id]
            for run in self._runs.values():
                if run.job_id == job_id and run.state not in TERMINAL:
                    self._cancel(run)
            self._save()
        return Response(body={})

    # ------------------------------------------------------------------ runs
    def run_now(self, req: Request) -> Response:
        body = req.json()
        job_id = _int(body.get("job_id"), "job_id", required=True)
        token = body.get("idempotency_token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_IDEMPOTENCY_TOKEN):
            raise invalid_parameter(
                f"idempotency_token must be a string of at most {MAX_IDEMPOTENCY_TOKEN} characters.")
        with self._lock:
            job = self._job(job_id)
            if token is not None and token in self._idempotency:
                existing = self._runs.get(self._idempotency[token])
                if existing is None or existing.deleted:
                    raise invalid_parameter(f"The run launched with idempotency token {token!r} was deleted.")
                return Response(body={"run_id": existing.run_id, "number_in_job": existing.run_id})
            run = self._new_run(job, body, token)
            self._runs[run.run_id] = run
            if token is not None:
                self._idempotency[token] = run.run_id
            self._admit(run)
            self._save()
            return Response(body={"run_id": run.run_id, "number_in_job": run.run_id})

    def get_run(self, req: Request) -> Response:
        run_id = _int(_query(req, "run_id"), "run_id", required=True)
        resolved = _bool(_query(req, "include_resolved_values"), "include_resolved_values")
        with self._lock:
            run, task = self._find(run_id)
            if task is not None:
                return Response(body=self._task_as_run(run, task, resolved))
            return Response(body=self._run_view(run, tasks=True, resolved=resolved))

    def list_runs(self, req: Request) -> Response:
        active = _bool(_query(req, "active_only"), "active_only")
        completed = _bool(_query(req, "completed_only"), "completed_only")
        if active and completed:
            raise invalid_parameter("active_only and completed_only cannot both be true.")
        job_id = _int(_query(req, "job_id"), "job_id")
        limit = _limit(_query(req, "limit"), RUNS_PAGE_MAX, zero_is_max=True)
        offset = _offset(req)
        run_type = _query(req, "run_type")
        since = _int(_query(req, "start_time_from"), "start_time_from")
        until = _int(_query(req, "start_time_to"), "start_time_to")
        expand = _bool(_query(req, "expand_tasks"), "expand_tasks")
        with self._lock:
            if job_id is not None and job_id not in self._jobs:
                raise job_missing(job_id)
            found = [r for r in self._runs.values()
                     if not r.deleted and (job_id is None or r.job_id == job_id)
                     and (not active or r.state in IN_FLIGHT) and (not completed or r.state in TERMINAL)
                     and (run_type in (None, "JOB_RUN"))
                     and (since is None or r.start_time >= since) and (until is None or r.start_time <= until)]
            found.sort(key=lambda r: (r.start_time, r.run_id), reverse=True)
            page = [self._run_view(r, tasks=expand, resolved=False) for r in found[offset:offset + limit]]
        return Response(body=_page("runs", page, offset, limit, len(found)))

    def cancel_run(self, req: Request) -> Response:
        run_id = _int(req.json().get("run_id"), "run_id", required=True)
        with self._lock:
            run, _ = self._find(run_id)
            self._cancel(run)
            self._save()
        return Response(body={})

    def cancel_all_runs(self, req: Request) -> Response:
        body = req.json()
        job_id = _int(body.get("job_id"), "job_id")
        queued_only = bool(body.get("all_queued_runs"))
        if job_id is None and not queued_only:
            raise invalid_parameter("job_id is required unless all_queued_runs is true.")
        with self._lock:
            if job_id is not None:
                self._job(job_id)
            for run in list(self._runs.values()):
                if job_id is not None and run.job_id != job_id:
                    continue
                if run.state == QUEUED or (not queued_only and run.state in ACTIVE):
                    self._cancel(run)
            self._save()
        return Response(body={})

    def delete_run(self, req: Request) -> Response:
        run_id = _int(req.json().get("run_id"), "run_id", required=True)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.deleted:
                raise run_missing(run_id)
            if run.state not in TERMINAL:
                raise invalid_parameter(f"Run {run_id} is active and cannot be deleted; cancel it first.")
            run.deleted = True
            self._save()
        return Response(body={})

    def get_run_output(self, req: Request) -> Response:
        run_id = _int(_query(req, "run_id"), "run_id", required=True)
        with self._lock:
            run, task = self._find(run_id)
            if task is None:
                if len(run.tasks) != 1:
                    raise invalid_parameter(
                        "Retrieving the output of runs with multiple tasks is not supported. Please retrieve the "
                        "output of each individual task run instead.")
                task = run.tasks[0]
            metadata = self._task_as_run(run, task, resolved=False)
            out: dict[str, Any] = {"metadata": metadata}
            if task.error:
                out["error"] = task.error
            if task.error_trace:
                out["error_trace"] = task.error_trace
            log_dir = Path(task.log_dir) if task.log_dir else None
        if log_dir is not None:
            text, truncated = logs(log_files(log_dir), LOG_BYTES)
            out.update(logs=text, logs_truncated=truncated)
        return Response(body=out)

    # ------------------------------------------------------------------ stopping
    def join(self, timeout: float = 10.0) -> None:
        """Wait for the run threads, which stop their processes once the workspace is stopping, then
        end the runs nothing will start now (queued ones)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            for run in self._runs.values():
                if run.state not in TERMINAL and run.run_id not in self._threads:
                    self._end_stopped(run)
            self._save()

    # ------------------------------------------------------------------ bookkeeping (lock held)
    def job_ids(self) -> set[int]:
        with self._lock:
            return set(self._jobs)

    def _job(self, job_id: int) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise job_missing(job_id)
        return job

    def _find(self, run_id: int) -> tuple[JobRun, TaskRun | None]:
        run = self._runs.get(run_id)
        if run is not None and not run.deleted:
            return run, None
        for candidate in self._runs.values():
            for task in candidate.tasks:
                if task.run_id == run_id and not candidate.deleted:
                    return candidate, task
        raise run_missing(run_id)

    def _new_id(self) -> int:
        run_id = self._next_run_id
        self._next_run_id += 1
        return run_id

    def _new_run(self, job: dict[str, Any], body: dict[str, Any], token: str | None) -> JobRun:
        settings = json.loads(json.dumps(job["settings"]))
        definitions = settings.get("parameters") or []
        given = body.get("job_parameters") or {}
        if not isinstance(given, dict):
            raise invalid_parameter("job_parameters must be an object of parameter names to values.")
        known = {p["name"] for p in definitions}
        unknown = sorted(set(given) - known)
        if unknown:
            raise invalid_parameter(f"Job parameter(s) {', '.join(unknown)} are not defined for job {job['job_id']}.")
        values = {p["name"]: str(given.get(p["name"], p.get("default", ""))) for p in definitions}
        overriding = {k: body[k] for k in ("python_params", "notebook_params", "python_named_params", "jar_params",
                                           "spark_submit_params", "sql_params") if body.get(k) is not None}
        if overriding and definitions:
            raise invalid_parameter("Job-level parameters are defined for this job: use job_parameters, not "
                                    f"{', '.join(sorted(overriding))}.")
        python_params = overriding.get("python_params")
        if python_params is not None and not (isinstance(python_params, list)
                                              and all(isinstance(p, str) for p in python_params)):
            raise invalid_parameter("python_params must be a list of strings.")
        tasks = settings.get("tasks") or []
        only = body.get("only")
        if only is not None:
            keys = {t["task_key"] for t in tasks}
            if not isinstance(only, list) or not set(only) <= keys:
                raise invalid_parameter(f"only must list task keys of job {job['job_id']}: {sorted(keys)}.")
            tasks = [t for t in tasks if t["task_key"] in only]
        queue = body.get("queue")
        queue_enabled = bool((queue if isinstance(queue, dict) else settings.get("queue") or {}).get("enabled"))
        run_id = self._new_id()
        return JobRun(
            run_id=run_id, job_id=job["job_id"], run_name=settings.get("name") or "Untitled", creator=self._user,
            settings=settings,
            parameters=[{"name": p["name"], "default": p.get("default", ""), "value": values[p["name"]]}
                        for p in definitions],
            overriding=overriding, queue_enabled=queue_enabled, start_time=now_ms(),
            tasks=[TaskRun(task_key=t["task_key"], run_id=self._new_id(), task=t) for t in tasks],
            idempotency_token=token, values=values)

    def _admit(self, run: JobRun) -> None:
        """Start the new run, queue it, or skip it."""
        limit = int(run.settings.get("max_concurrent_runs", 1))
        active = self._holding(run.job_id, but=run)
        waiting = any(r.job_id == run.job_id and r.state == QUEUED and r is not run for r in self._runs.values())
        if limit > 0 and active < limit and not (waiting and run.queue_enabled):
            self._dispatch(run)
        elif limit > 0 and run.queue_enabled:
            run.state = QUEUED
            run.queue_reason = f"Queued due to reaching maximum concurrent runs of {limit}."
            for task in run.tasks:
                task.state = QUEUED
        else:
            message = f"Skipping this run because the limit of {limit} maximum concurrent runs has been reached."
            self._end(run, SKIPPED, "MAXIMUM_CONCURRENT_RUNS_REACHED", message, "MAX_CONCURRENT_RUNS_EXCEEDED",
                      "CLIENT_ERROR")

    def _holding(self, job_id: int, but: JobRun | None = None) -> int:
        """How many runs of the job hold a slot of its max_concurrent_runs (``but`` not counted)."""
        return sum(1 for r in self._runs.values() if r.job_id == job_id and r.state in ACTIVE and r is not but)

    def _dispatch(self, run: JobRun) -> None:
        run.state, run.queue_reason, run.dispatched = PENDING, None, now_ms()
        for task in run.tasks:
            task.state = PENDING
        if self._stopping.is_set():
            self._end_stopped(run)
            return
        token = f"dapi{secrets.token_hex(16)}"
        self._run_tokens[hashlib.sha256(token.encode()).hexdigest()] = run.run_id
        self._tokens_by_run[run.run_id] = token
        thread = threading.Thread(target=self._execute, args=(run.run_id,), name=f"job-run-{run.run_id}", daemon=True)
        self._threads[run.run_id] = thread
        thread.start()

    def _dispatch_queued(self, job_id: int) -> None:
        queued = sorted((r for r in self._runs.values() if r.job_id == job_id and r.state == QUEUED),
                        key=lambda r: r.run_id)
        for run in queued:
            limit = int(run.settings.get("max_concurrent_runs", 1))
            if self._holding(job_id) >= limit:
                return
            self._dispatch(run)

    def _cancel(self, run: JobRun) -> None:
        if run.state in TERMINAL:
            return
        if run.state == QUEUED:
            run.user_cancelled_or_timedout = True
            self._end(run, TERMINATED, "CANCELED", "Run was cancelled while it was queued.", "USER_CANCELED", "SUCCESS")
            return
        run.cancel_requested = True  # the run's thread stops its process and ends the run

    def _end(self, run: JobRun, state: str, result: str, message: str, code: str, kind: str) -> None:
        ended = now_ms()
        run.state, run.result, run.message, run.code, run.kind = state, result, message, code, kind
        run.queue_reason = None
        run.end_time = ended
        run.exec_end = run.exec_end or ended
        for task in run.tasks:
            if task.state not in TERMINAL:
                task.state, task.result, task.code, task.kind = state, result, code, kind
                task.message, task.end_time = message, ended
        self._revoke(run.run_id)

    def _end_stopped(self, run: JobRun) -> None:
        self._end(run, INTERNAL_ERROR, "FAILED", STOPPED_MESSAGE.format(state=run.state), "INTERNAL_ERROR",
                  "INTERNAL_ERROR")

    def _revoke(self, run_id: int) -> None:
        token = self._tokens_by_run.pop(run_id, None)
        if token is not None:
            self._run_tokens.pop(hashlib.sha256(token.encode()).hexdigest(), None)

    # ------------------------------------------------------------------ execution (a thread per run)
    def _execute(self, run_id: int) -> None:
        with self._lock:
            run = self._runs[run_id]
            order = _ordered(run.tasks)
        try:
            failed: set[str] = set()
            for task in order:
                with self._lock:
                    halted = run.cancel_requested or self._stopping.is_set()
                if halted:
                    break
                upstream = [d.get("task_key") for d in task.task.get("depends_on") or []]
                if any(key in failed for key in upstream):
                    with self._lock:
                        self._end_task(task, TERMINATED, "UPSTREAM_FAILED", "An upstream task failed.", "SKIPPED",
                                       "CLIENT_ERROR")
                    failed.add(task.task_key)
                    continue
                self._run_task(run, task)
                if task.result != "SUCCESS":
                    failed.add(task.task_key)
            with self._lock:
                self._finish(run)
        except Exception as exc:  # a bug of this service: the run must still end
            log.exception("job run %s failed in the local Jobs service", run_id)
            with self._lock:
                self._end(run, INTERNAL_ERROR, "FAILED", f"Internal error of the local Jobs service: {exc}",
                          "INTERNAL_ERROR", "INTERNAL_ERROR")
        finally:
            with self._lock:
                self._revoke(run_id)
                self._threads.pop(run_id, None)
                if not self._stopping.is_set():
                    self._dispatch_queued(run.job_id)
                self._save()

    def _run_task(self, run: JobRun, task: TaskRun) -> None:
        python = task.task.get("spark_python_task") or {}
        with self._lock:
            started = now_ms()
            values = reference_values(job_id=run.job_id, job_name=run.run_name, run_id=run.run_id,
                                      task_key=task.task_key, task_run_id=task.run_id, start_time_ms=run.start_time,
                                      trigger=TRIGGER, parameters=run.values)
            token = self._tokens_by_run.get(run.run_id, "")
            log_dir = self._log_root / str(task.run_id)
            task.log_dir, task.start_time = str(log_dir), started
        parameters = run.overriding.get("python_params", python.get("parameters") or [])
        try:
            task.parameters = resolve(parameters, values)
            script = script_path(str(python.get("python_file", "")), self._cwd)
            env = child_environment(os.environ, host=self._base_url(), token=token, registry_uri=self._registry_uri)
            proc = TaskProcess(script, task.parameters, env, self._cwd, log_dir)
        except CannotStart as exc:
            with self._lock:
                self._end_task(task, INTERNAL_ERROR, "FAILED", exc.message, exc.code, exc.kind)
                task.error = exc.message
                self._save()
            return
        with self._lock:
            task.state, task.pid = RUNNING, proc.pid
            if run.state == PENDING:
                run.state, run.exec_start = RUNNING, started
            self._save()
        self._follow(run, task, proc)

    def _follow(self, run: JobRun, task: TaskRun, proc: TaskProcess) -> None:
        """Wait for the process; stop it on cancel, on a timeout or when the workspace stops."""
        deadline = _deadline(run, task)
        while True:
            code = proc.wait(POLL_SECONDS)
            if code is not None:
                break
            if self._stopping.is_set():
                proc.stop()
                with self._lock:
                    self._end_task(task, INTERNAL_ERROR, "FAILED", STOPPED_MESSAGE.format(state=RUNNING),
                                   "INTERNAL_ERROR", "INTERNAL_ERROR")
                return
            with self._lock:
                cancel = run.cancel_requested
            timed_out = deadline is not None and time.monotonic() >= deadline
            if cancel or timed_out:
                with self._lock:
                    task.state = run.state = TERMINATING
                    self._save()
                proc.stop()
                with self._lock:
                    if cancel:
                        self._end_task(task, TERMINATED, "CANCELED", "Run was cancelled.", "USER_CANCELED", "SUCCESS")
                    else:
                        self._end_task(task, TERMINATED, "TIMEDOUT", "The run timed out.", "CANCELED", "CLIENT_ERROR")
                return
        proc.reap()
        with self._lock:
            task.state = TERMINATING
            task.exec_end = now_ms()
        if code == 0:
            with self._lock:
                self._end_task(task, TERMINATED, "SUCCESS", "", "SUCCESS", "SUCCESS")
            return
        stderr = proc.stderr_path
        message = tail(stderr, MESSAGE_CHARS) or f"The Python process exited with code {code}."
        with self._lock:
            task.error, task.error_trace = message, tail(stderr, TRACE_CHARS) or None
            self._end_task(task, TERMINATED, "FAILED", message, "RUN_EXECUTION_ERROR", "CLIENT_ERROR")

    def _end_task(self, task: TaskRun, state: str, result: str, message: str, code: str, kind: str) -> None:
        ended = now_ms()
        task.state, task.result, task.message, task.code, task.kind = state, result, message, code, kind
        task.exec_end = task.exec_end or ended
        task.end_time = ended
        task.start_time = task.start_time or ended

    def _finish(self, run: JobRun) -> None:
        """The run's end from its tasks' ends."""
        if run.state in TERMINAL:
            return
        run.state = TERMINATING
        run.exec_end = max([t.exec_end for t in run.tasks] or [now_ms()])
        if self._stopping.is_set() and any(t.state not in TERMINAL for t in run.tasks):
            self._end_stopped(run)
            return
        multi = len(run.tasks) > 1

        def said(t: TaskRun) -> str:
            return f"Task {t.task_key} failed with message: {t.message}" if multi else t.message

        by_result = {t.result: t for t in reversed(run.tasks) if t.state in TERMINAL}
        broken = next((t for t in run.tasks if t.state == INTERNAL_ERROR), None)
        if broken is not None:
            self._end(run, INTERNAL_ERROR, "FAILED", said(broken), broken.code or "INTERNAL_ERROR",
                      broken.kind or "INTERNAL_ERROR")
        elif run.cancel_requested and (any(t.state not in TERMINAL for t in run.tasks) or "CANCELED" in by_result):
            run.user_cancelled_or_timedout = True
            self._end(run, TERMINATED, "CANCELED", "Run was cancelled.", "USER_CANCELED", "SUCCESS")
        elif "TIMEDOUT" in by_result:
            run.user_cancelled_or_timedout = True
            self._end(run, TERMINATED, "TIMEDOUT", "The run timed out.", "CANCELED", "CLIENT_ERROR")
        elif "FAILED" in by_result:
            self._end(run, TERMINATED, "FAILED", said(by_result["FAILED"]), "RUN_EXECUTION_ERROR", "CLIENT_ERROR")
        elif "UPSTREAM_FAILED" in by_result:
            self._end(run, TERMINATED, "FAILED", "An upstream task failed.", "RUN_EXECUTION_ERROR", "CLIENT_ERROR")
        else:
            self._end(run, TERMINATED, "SUCCESS", "", "SUCCESS", "SUCCESS")

    # ------------------------------------------------------------------ views (lock held)
    def _run_page_url(self, job_id: int, run_id: int) -> str:
        return f"{self._base_url()}/#job/{job_id}/run/{run_id}"

    def _run_view(self, run: JobRun, *, tasks: bool, resolved: bool) -> dict[str, Any]:
        view: dict[str, Any] = {
            "job_id": run.job_id, "run_id": run.run_id, "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id, "attempt_number": 0, "creator_user_name": run.creator,
            "run_name": run.run_name, "run_type": "JOB_RUN", "trigger": TRIGGER,
            "start_time": run.start_time, "end_time": run.end_time,
            "run_page_url": self._run_page_url(run.job_id, run.run_id),
            "state": _state(run.state, run.result, run.message, run.queue_reason, run.user_cancelled_or_timedout),
            "status": _status(run.state, run.code, run.kind, run.message, run.queue_reason),
            "job_parameters": [dict(p) for p in run.parameters],
            **_durations(run.start_time, run.dispatched, run.exec_start, run.exec_end, run.end_time),
        }
        if run.settings.get("description"):
            view["description"] = run.settings["description"]
        if run.overriding:
            view["overriding_parameters"] = json.loads(json.dumps(run.overriding))
        if tasks:
            view["tasks"] = [self._task_view(run, t, resolved) for t in run.tasks]
        return view

    def _task_view(self, run: JobRun, task: TaskRun, resolved: bool) -> dict[str, Any]:
        view = {k: v for k, v in task.task.items() if k not in ("max_retries", "min_retry_interval_millis")}
        view.update({
            "task_key": task.task_key, "run_id": task.run_id, "attempt_number": 0,
            "start_time": task.start_time, "end_time": task.end_time,
            "run_page_url": self._run_page_url(run.job_id, task.run_id),
            "state": _state(task.state, task.result, task.message, None, run.user_cancelled_or_timedout),
            "status": _status(task.state, task.code, task.kind, task.message, run.queue_reason),
            **_durations(task.start_time, task.start_time, task.start_time, task.exec_end, task.end_time),
        })
        view.pop("queue_duration", None)
        if resolved and task.parameters is not None:
            view["resolved_values"] = {"spark_python_task": {"parameters": list(task.parameters)}}
        return view

    def _task_as_run(self, run: JobRun, task: TaskRun, resolved: bool) -> dict[str, Any]:
        """A task run answered as a run (``runs/get`` and ``get-output`` metadata for a task run)."""
        task_view = self._task_view(run, task, resolved)
        return {"job_id": run.job_id, "run_id": task.run_id, "job_run_id": run.run_id,
                "number_in_job": task.run_id, "run_name": task.task_key, "run_type": "JOB_RUN",
                "creator_user_name": run.creator, "attempt_number": 0, "trigger": TRIGGER,
                **{k: task_view[k] for k in ("start_time", "end_time", "run_page_url", "state", "status")},
                "tasks": [task_view]}

    # ------------------------------------------------------------------ persistence (lock held)
    def _save(self) -> None:
        state = {"next_job_id": self._next_job_id, "next_run_id": self._next_run_id,
                 "jobs": list(self._jobs.values()), "runs": [asdict(r) for r in self._runs.values()],
                 "idempotency": self._idempotency}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        staging = self._path.with_name(self._path.name + ".tmp")
        staging.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
        os.replace(staging, self._path)

    def _load(self) -> None:
        if not self._path.exists():
            return
        state = json.loads(self._path.read_text(encoding="utf-8"))
        self._next_job_id, self._next_run_id = int(state["next_job_id"]), int(state["next_run_id"])
        self._jobs = {int(j["job_id"]): j for j in state["jobs"]}
        oldest = now_ms() - RETENTION_MS
        self._runs = {int(r["run_id"]): JobRun.load(r) for r in state["runs"]
                      if not r["end_time"] or r["end_time"] >= oldest}
        self._idempotency = {str(k): int(v) for k, v in state["idempotency"].items()}
        with self._lock:
            stale = [r for r in self._runs.values() if r.state not in TERMINAL]
            for run in stale:
                self._end_stopped(run)
            if stale:
                self._save()


# ---------------------------------------------------------------------- settings
def _queue_default(req: Request, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings written through API 2.2 without ``queue`` queue: "For jobs created with the Jobs API
    2.2, queueing is enabled by default [...] For jobs created with the 2.0 and 2.1 versions of the
    Jobs API, queueing is not enabled by default" ("Updating from Jobs API 2.1 to 2.2",
    https://docs.databricks.com/reference/jobs-api-updates.html). The same default for a
    ``reset`` through 2.2 (all settings replaced) is [INF]."""
    if req.path.startswith("/api/2.2/") and "queue" not in settings:
        settings["queue"] = {"enabled": True}
    return settings


def _normalised(raw: dict[str, Any]) -> dict[str, Any]:
    """Job settings as ``JobSettings`` reads them, checked, with the documented defaults."""
    try:
        settings = sdk.JobSettings.from_dict(raw).as_dict()
    except Exception as exc:  # any shape the dataclass cannot read is bad input
        raise invalid_parameter(f"Invalid job settings: {type(exc).__name__}: {exc}") from exc
    settings.setdefault("name", "Untitled")
    settings.setdefault("max_concurrent_runs", 1)
    settings.setdefault("format", "MULTI_TASK")
    settings.setdefault("timeout_seconds", 0)
    limit = settings["max_concurrent_runs"]
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_CONCURRENT_RUNS:
        raise invalid_parameter(f"max_concurrent_runs must be between 0 and {MAX_CONCURRENT_RUNS}.")
    if not isinstance(settings["timeout_seconds"], int) or settings["timeout_seconds"] < 0:
        raise invalid_parameter("timeout_seconds must be a non-negative integer.")
    names = [p.get("name") for p in settings.get("parameters") or []]
    for p in settings.get("parameters") or []:
        if not p.get("name") or "default" not in p:
            raise invalid_parameter("Each job parameter needs a name and a default value.")
    if len(set(names)) != len(names):
        raise invalid_parameter("Job parameter names must be unique.")
    _check_tasks(settings.get("tasks") or [])
    return settings


def _check_tasks(tasks: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for task in tasks:
        key = task.get("task_key")
        if not isinstance(key, str) or not _TASK_KEY.match(key):
            raise invalid_parameter(f"Invalid task_key {key!r}: 1 to 100 letters, digits, '-', '_' or '.'.")
        if key in keys:
            raise invalid_parameter(f"Task key {key} is used by more than one task.")
        keys.append(key)
        kinds = sorted(k for k in task if k in _TASK_TYPES)
        if kinds != ["spark_python_task"]:
            raise invalid_parameter(f"Task {key}: the local workspace runs spark_python_task tasks only, got "
                                    f"{', '.join(kinds) or 'no task type'}.")
        python = task["spark_python_task"]
        if not python.get("python_file"):
            raise invalid_parameter(f"Task {key}: spark_python_task.python_file is required.")
        if not all(isinstance(p, str) for p in python.get("parameters") or []):
            raise invalid_parameter(f"Task {key}: spark_python_task.parameters must be strings.")
    for task in tasks:
        for dep in task.get("depends_on") or []:
            if dep.get("task_key") not in keys:
                raise invalid_parameter(f"Task {task['task_key']} depends on {dep.get('task_key')!r}, which is not "
                                        "a task of this job.")
    try:
        _ordered(tasks, key=lambda t: t["task_key"], deps=lambda t: [d["task_key"] for d in t.get("depends_on") or []])
    except ValueError as exc:
        raise invalid_parameter(str(exc)) from exc


def _ordered(items: Iterable[Any], key: Callable[[Any], str] = lambda t: t.task_key,
             deps: Callable[[Any], list[str]] | None = None) -> list[Any]:
    """Items (unique keys) in dependency order (upstream first), keeping the given order otherwise; a
    dependency that is not among the items does not hold an item back."""
    deps = deps or (lambda t: [d.get("task_key") for d in t.task.get("depends_on") or []])
    pending, order = list(items), []
    while pending:
        waiting = {key(p) for p in pending}
        ready = [i for i in pending if waiting.isdisjoint(deps(i))]
        if not ready:
            raise ValueError(f"The task dependencies form a cycle: {', '.join(key(i) for i in pending)}.")
        order.extend(ready)
        pending = [i for i in pending if i not in ready]
    return order


def _merge(settings: dict[str, Any], new: dict[str, Any], remove: list[str]) -> dict[str, Any]:
    """``jobs/update``: replace top-level fields, merge keyed arrays, then remove fields."""
    for name, value in new.items():
        key = _MERGED_ARRAYS.get(name)
        if key is not None and isinstance(value, list) and isinstance(settings.get(name), list):
            merged = {item.get(key): item for item in settings[name]}
            for item in value:
                merged[item.get(key)] = item
            settings[name] = list(merged.values())
        else:
            settings[name] = value
    for path in remove:
        top, _, entry = path.partition("/")
        if entry and top in _MERGED_ARRAYS and isinstance(settings.get(top), list):
            settings[top] = [i for i in settings[top] if i.get(_MERGED_ARRAYS[top]) != entry]
        elif not entry:
            settings.pop(top, None)
        else:
            raise invalid_parameter(f"Cannot remove {path}: only top-level fields, tasks/<key> and "
                                    "job_clusters/<key> can be removed.")
    return settings


# ---------------------------------------------------------------------- wire helpers
def _state(state: str, result: str | None, message: str, queue_reason: str | None, cancelled: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"life_cycle_state": state, "state_message": message or "",
                           "user_cancelled_or_timedout": cancelled}
    if state in TERMINAL and result:
        out["result_state"] = result
    if state == QUEUED and queue_reason:
        out["queue_reason"] = queue_reason
    return out


def _status(state: str, code: str | None, kind: str | None, message: str, queue_reason: str | None) -> dict[str, Any]:
    """The v2 ``RunStatus``: terminal states are all TERMINATED, with the reason in ``termination_details``."""
    if state in TERMINAL:
        return {"state": TERMINATED, "termination_details": {"code": code or "SUCCESS", "type": kind or "SUCCESS",
                                                             "message": message or ""}}
    out: dict[str, Any] = {"state": state}
    if state == QUEUED:
        out["queue_details"] = {"code": "MAX_CONCURRENT_RUNS_REACHED", "message": queue_reason or ""}
    return out


def _durations(created: int, dispatched: int, exec_start: int, exec_end: int, ended: int) -> dict[str, int]:
    out = {"queue_duration": max(dispatched - created, 0) if dispatched else 0,
           "setup_duration": max(exec_start - dispatched, 0) if exec_start and dispatched else 0,
           "execution_duration": max(exec_end - exec_start, 0) if exec_end and exec_start else 0,
           "cleanup_duration": max(ended - exec_end, 0) if ended and exec_end else 0}
    if ended:
        out["run_duration"] = max(ended - created, 0)
    return out


def _deadline(run: JobRun, task: TaskRun) -> float | None:
    """Monotonic deadline from the job's and the task's ``timeout_seconds`` (0: none)."""
    limits = []
    job_limit = int(run.settings.get("timeout_seconds") or 0)
    if job_limit > 0:
        limits.append(job_limit - (now_ms() - (run.dispatched or run.start_time)) / 1000)
    task_limit = int(task.task.get("timeout_seconds") or 0)
    if task_limit > 0:
        limits.append(task_limit)
    return time.monotonic() + min(limits) if limits else None


def _page(name: str, items: list[dict[str, Any]], offset: int, limit: int, total: int) -> dict[str, Any]:
    """A list page; the token keys appear only when there is such a page (an empty token would be
    followed for ever by some readers)."""
    out: dict[str, Any] = {"has_more": offset + limit < total}
    if items:
        out[name] = items
    if offset + limit < total:
        out["next_page_token"] = _token(offset + limit)
    if offset > 0:
        out["prev_page_token"] = _token(max(offset - limit, 0))
    return out


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _offset(req: Request) -> int:
    token = _query(req, "page_token")
    if token:
        try:
            value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise invalid_parameter(f"Invalid page_token {token!r}.") from exc
        if not isinstance(value, int) or value < 0:
            raise invalid_parameter(f"Invalid page_token {token!r}.")
        return value
    offset = _int(_query(req, "offset"), "offset")
    if offset is not None and offset < 0:
        raise invalid_parameter("offset must not be negative.")
    return offset or 0


def _limit(text: str | None, maximum: int, *, zero_is_max: bool) -> int:
    value = _int(text, "limit")
    if value is None:
        return DEFAULT_PAGE
    if value == 0 and zero_is_max:
        return maximum
    if not 0 < value <= maximum:
        raise invalid_parameter(f"limit must be between 1 and {maximum}.")
    return value


def _query(req: Request, name: str) -> str | None:
    values = req.query.get(name)
    return values[-1] if values else None


def _int(value: Any, name: str, *, required: bool = False) -> int | None:
    if value is None or value == "":
        if required:
            raise invalid_parameter(f"{name} is required.")
        return None
    if isinstance(value, bool):
        raise invalid_parameter(f"{name} must be an integer, got {value!r}.")
    with contextlib.suppress(TypeError, ValueError):
        return int(value)
    raise invalid_parameter(f"{name} must be an integer, got {value!r}.")


def _bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise invalid_parameter(f"{name} must be true or false, got {value!r}.")
