"""The local host runs the real triggers of fixture Function Apps (tests/host_apps/)."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import local.host as host_module
from local.host import HostStartError, LocalHost, RouteTemplate, parse_timespan
from local.stack import HOST_KEY as HOST_KEY_OF_THE_STACK
from local.stack import WEBHOOK_SECRET, app_settings, function_host
from shared.queues import decode_content, encode_json
from shared.signatures import mlflow_signature
from shared.storage import open_queues

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "host_apps"


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "record.jsonl"
    monkeypatch.setenv("HOST_TEST_RECORD", str(path))
    return path


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    monkeypatch.setenv("REACTOR_STORAGE", url)
    return url


def records(path: Path, fn: str | None = None) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if fn is None or row["fn"] == fn]


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def http_host(storage: str) -> Iterator[LocalHost]:
    host = LocalHost(app_dir=APPS / "http_app", port=0).start()
    try:
        yield host
    finally:
        host.stop()


def test_http_route_parameter_query_and_headers(http_host: LocalHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    resp = requests.get(f"{http_host.url}/api/items/42?x=1&tag=a&tag=b", headers={"X-Probe": "p"}, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Function"] == "get_item"
    seen = resp.json()
    assert seen["item_id"] == "42"
    assert seen["params"] == {"x": "1", "tag": "a,b"}
    assert seen["method"] == "GET"
    assert seen["url"] == f"{http_host.url}/api/items/42?x=1&tag=a&tag=b"
    assert seen["probe"] == "p"
    assert any("Executed 'Functions.get_item' (Succeeded, Trigger=httpTrigger" in r.message for r in caplog.records)

    # A literal segment wins over {item_id}; route params are percent-decoded.
    assert requests.get(f"{http_host.url}/api/items/special", timeout=5).text == "special"
    assert requests.get(f"{http_host.url}/api/items/a%20b", timeout=5).json()["item_id"] == "a b"
    # {*rest} takes the remainder; a str return is a 200 text/plain body.
    resp = requests.get(f"{http_host.url}/api/files/a/b/c.txt", timeout=5)
    assert (resp.status_code, resp.text) == (200, "path=a/b/c.txt")
    assert resp.headers["Content-Type"].startswith("text/plain")


def test_http_method_enforcement_and_not_found(http_host: LocalHost) -> None:
    resp = requests.post(f"{http_host.url}/api/items/42", data=b"x", timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET"
    assert requests.get(f"{http_host.url}/api/echo", timeout=5).status_code == 405
    assert requests.get(f"{http_host.url}/api/nothing-here", timeout=5).status_code == 404
    assert requests.get(f"{http_host.url}/items/42", timeout=5).status_code == 404  # outside the route prefix


def test_http_async_function_gets_body_and_context(http_host: LocalHost) -> None:
    payload = bytes(range(256)) * 10
    resp = requests.post(f"{http_host.url}/api/echo", data=payload, timeout=5)
    assert resp.status_code == 201
    assert resp.content == payload
    assert resp.headers["X-Function-Name"] == "echo"

    # Chunked transfer (a generator body) is read as well.
    resp = requests.put(f"{http_host.url}/api/echo", data=iter([b"abc", b"", b"defg"]), timeout=5)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert (resp.status_code, resp.content) == (201, b"abcdefg")


def test_http_function_exception_is_500(http_host: LocalHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    resp = requests.get(f"{http_host.url}/api/boom", timeout=5)
    assert resp.status_code == 500
    assert "kaboom" not in resp.text
    assert any("Executed 'Functions.boom' (Failed" in r.message for r in caplog.records)
    # The host keeps serving after a failed invocation.
    assert requests.get(f"{http_host.url}/api/items/1", timeout=5).status_code == 200


def test_http_body_cap(http_host: LocalHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_module, "MAX_REQUEST_BODY_BYTES", 16)
    assert requests.post(f"{http_host.url}/api/echo", data=b"x" * 17, timeout=5).status_code == 413
    assert requests.post(f"{http_host.url}/api/echo", data=b"x" * 16, timeout=5).status_code == 201


def test_http_answers_a_burst_of_simultaneous_new_connections(http_host: LocalHost) -> None:
    """64 clients connect at the same moment, each on a fresh connection: all are answered, as
    behind the Functions host's listen backlog (socketserver's default of 5 dropped most)."""
    clients = 64
    port = int(urlsplit(http_host.url).port or 0)
    start = threading.Barrier(clients)

    def client(i: int) -> tuple[int, str]:
        start.wait(timeout=10)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", f"/api/items/{i}", headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())["item_id"]
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        # A refused or reset connection shows up as its exception in the comparison below.
        answers = [f.exception(timeout=30) or f.result() for f in futures]
    assert answers == [(200, str(i)) for i in range(clients)]


# -- Keys and auth levels -----------------------------------------------------------------

MASTER, HOST_KEY, GUARDED_KEY, OTHER_KEY = "test-master-key", "test-host-key", "test-guarded-key", "test-other-key"


@pytest.fixture
def auth_host(storage: str) -> Iterator[LocalHost]:
    host = LocalHost(app_dir=APPS / "auth_app", port=0).start()  # keys from its local.settings.json
    try:
        yield host
    finally:
        host.stop()


def _get(host: LocalHost, route: str, key: str | None = None, code: str | None = None) -> requests.Response:
    headers = {"x-functions-key": key} if key is not None else {}
    params = {"code": code} if code is not None else {}
    return requests.get(f"{host.url}/api/{route}", headers=headers, params=params, timeout=5)


def test_function_level_needs_a_key_of_the_function_or_the_host(auth_host: LocalHost) -> None:
    refused = [_get(auth_host, "guarded"), _get(auth_host, "guarded", key="wrong"), _get(auth_host, "guarded", code="")]
    assert [(r.status_code, r.content) for r in refused] == [(401, b"")] * 3
    # The host key, in the header or as ?code=, the function's own key, and the master key.
    for key, code in [(HOST_KEY, None), (None, HOST_KEY), (GUARDED_KEY, None), (None, MASTER)]:
        resp = _get(auth_host, "guarded", key=key, code=code)
        assert (resp.status_code, resp.text) == (200, "guarded GET"), (key, code)
    # Another function's key is no key here; it opens only its own function.
    assert _get(auth_host, "guarded", key=OTHER_KEY).status_code == 401
    assert _get(auth_host, "other", key=OTHER_KEY).status_code == 200
    assert _get(auth_host, "other", key=GUARDED_KEY).status_code == 401
    # Every method the function takes is guarded, not only GET.
    assert requests.post(f"{auth_host.url}/api/guarded", data=b"x", timeout=5).status_code == 401
    assert auth_host.function_key == HOST_KEY and auth_host.master_key == MASTER


def test_the_header_wins_over_code_as_in_the_host(auth_host: LocalHost) -> None:
    assert _get(auth_host, "guarded", key="wrong", code=HOST_KEY).status_code == 401
    assert _get(auth_host, "guarded", key=HOST_KEY, code="wrong").status_code == 200


def test_admin_level_takes_only_the_master_key(auth_host: LocalHost) -> None:
    for key in (None, HOST_KEY, "wrong"):
        assert _get(auth_host, "admin-only", key=key).status_code == 401, key
    assert _get(auth_host, "admin-only", key=MASTER).text == "admin_only GET"
    assert _get(auth_host, "admin-only", code=MASTER).status_code == 200


def test_anonymous_level_is_open_with_or_without_a_key(auth_host: LocalHost) -> None:
    assert _get(auth_host, "open").text == "open_door GET"
    assert _get(auth_host, "open", key="wrong").status_code == 200
    assert _get(auth_host, "nothing-here").status_code == 404  # routing first: no key question for 404s


def test_keys_never_reach_the_log_or_a_refusal(auth_host: LocalHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="local.host")
    assert _get(auth_host, "guarded", code=HOST_KEY).status_code == 200
    assert _get(auth_host, "guarded", key=GUARDED_KEY).status_code == 200
    refused = _get(auth_host, "admin-only", code=HOST_KEY)
    assert refused.status_code == 401 and refused.content == b""
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "code=<redacted>" in logged  # the request line was logged, with its key taken out
    assert "Unauthorized: GET /api/admin-only needs a valid key for 'Functions.admin_only'" in logged
    for key in (MASTER, HOST_KEY, GUARDED_KEY, OTHER_KEY):
        assert key not in logged
        assert key not in repr(auth_host.keys)


def test_without_configured_keys_the_host_makes_its_own(
    storage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(APPS / "auth_app" / "function_app.py", app_dir)  # without its local.settings.json
    caplog.set_level(logging.DEBUG, logger="local.host")
    with LocalHost(app_dir=app_dir, port=0) as host:
        assert _get(host, "guarded").status_code == 401  # enforced as in Azure, not open as in Core Tools
        assert _get(host, "guarded", key=host.function_key).status_code == 200
        assert _get(host, "admin-only", key=host.function_key).status_code == 401
        assert _get(host, "admin-only", code=host.master_key).status_code == 200
        generated = (host.function_key, host.master_key)
    assert len(set(generated)) == 2 and all(len(key) >= 40 for key in generated)
    with LocalHost(app_dir=app_dir, port=0) as again:
        assert again.function_key not in generated  # random per start
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(key in logged for key in generated)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("LocalKeyStore.host.function.default", "'LocalKeyStore.host.function.default' is empty"),
        ("LocalKeyStore.functions.guarded", "expected LocalKeyStore.host.master"),
        ("LocalKeyStore.host.systemKey.x", "expected LocalKeyStore.host.master"),
    ],
)
def test_a_malformed_key_setting_stops_the_start(
    storage: str, monkeypatch: pytest.MonkeyPatch, setting: str, message: str
) -> None:
    monkeypatch.setenv(setting, "" if message.endswith("is empty") else "some-key")
    with pytest.raises(HostStartError, match=message):
        LocalHost(app_dir=APPS / "auth_app", port=0).start()


def test_the_apps_operators_views_need_a_key_and_its_webhook_does_not(tmp_path: Path) -> None:
    """The real function_app through the local stack's settings: ``records`` and ``rollouts``
    (FUNCTION level) refuse a caller without a key; ``registry_webhook`` (ANONYMOUS, the
    signature is its authentication) is reached without one."""
    never = "0 0 0 1 1 *"
    settings = app_settings(data_dir=tmp_path, policy=ROOT / "policy.yaml", mlflow_url="http://127.0.0.1:9",
                            workspace_url="http://127.0.0.1:9", watch_schedule=never, repair_schedule=never)
    with function_host(settings) as host:
        for view in ("records", "rollouts"):
            assert _get(host, view).status_code == 401, view
            assert _get(host, view, key="wrong").status_code == 401, view
            assert _get(host, view, key=host.function_key).status_code == 200, view
        # A signed delivery with a body that is not JSON: the function itself answers (400, with
        # its reason), and records the rejection, which the operators' view then shows.
        body, delivery, stamp = b"{", str(uuid.uuid4()), str(int(time.time()))
        headers = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp,
                   "X-MLflow-Signature": mlflow_signature(WEBHOOK_SECRET, delivery, stamp, body)}
        resp = requests.post(f"{host.url}/api/registry/webhook", data=body, headers=headers, timeout=10)
        assert resp.status_code == 400 and "not JSON" in resp.json()["error"]
        rejected = requests.get(f"{host.url}/api/records", params={"status": "rejected", "code": host.function_key},
                                timeout=10)
        assert [r["kind"] for r in rejected.json()["records"]] == ["event"]
    assert host.function_key == HOST_KEY_OF_THE_STACK


# -- Timers --------------------------------------------------------------------------------


def test_timer_schedule_setting_fires_without_overlap(
    record_file: Path, storage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    monkeypatch.delenv("SCHEDULE", raising=False)  # comes from the app's local.settings.json
    monkeypatch.setenv("GREETING", "from-env")  # already set: local.settings.json must not override it
    started = time.time()
    host = LocalHost(app_dir=APPS / "timer_app", port=0).start()
    try:
        assert os.environ["SCHEDULE"] == "* * * * * *"
        # Every timer's end state before stopping: stop() cuts a retry sequence short, so the
        # retried timer's third attempt must be in before the host goes.
        assert wait_for(
            lambda: len(records(record_file, "slow_tick")) >= 2
            and records(record_file, "on_startup")
            and len(records(record_file, "retried")) >= 3,
            timeout=5,
        )
    finally:
        host.stop()
    assert "SCHEDULE" not in os.environ  # what the host added from local.settings.json is removed again
    ticks = records(record_file, "slow_tick")
    assert ticks[1]["start"] - started < 2.6  # an every-second timer fired at least twice in ~2.5 s
    assert all(t["concurrent"] == 1 for t in ticks)
    for earlier, later in itertools.pairwise(ticks):
        assert later["start"] >= earlier["end"]  # never overlapping
    assert all(t["past_due"] is False for t in ticks)
    assert ticks[0]["greeting"] == "from-env"

    startup = records(record_file, "on_startup")
    assert len(startup) == 1  # run_on_startup, although the next occurrence is months away
    assert startup[0]["past_due"] is False
    assert startup[0]["next"].startswith(f"{time.gmtime().tm_year + 1}-01-01T00:00:00")

    # A failing timer is retried per @app.retry and is not fatal for the host.
    assert [(r["retry_count"], r["max"]) for r in records(record_file, "retried")] == [(0, 2), (1, 2), (2, 2)]
    assert any("Executed 'Functions.retried' (Failed" in r.message for r in caplog.records)


# -- Queues --------------------------------------------------------------------------------


@pytest.fixture
def queue_host(record_file: Path, storage: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHost]:
    monkeypatch.setenv("JOBS_QUEUE", "jobs")
    host = LocalHost(app_dir=APPS / "queue_app", port=0).start()
    try:
        yield host
    finally:
        host.stop()


def test_queue_message_delivered_with_output_binding(queue_host: LocalHost, record_file: Path, storage: str) -> None:
    queues = open_queues(storage)
    message_id = queues.send("jobs", encode_json({"a": 1}))
    assert queue_host.wait_idle(timeout=10)
    [seen] = records(record_file, "work")
    assert seen == {
        "fn": "work",
        "id": message_id,
        "body": '{"a":1}',
        "dequeue_count": 1,
        "has_insertion_time": True,
        "has_pop_receipt": True,
    }
    assert queues.count("jobs") == 0
    [result] = queues.peek("results")
    assert json.loads(decode_content(result.content)) == {"done": {"a": 1}}  # written base64, as the host does


def test_failing_message_retried_then_poisoned(
    queue_host: LocalHost, record_file: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    queues = open_queues(storage)
    wire = encode_json({"n": 1})
    message_id = queues.send("fails", wire)
    assert queue_host.wait_idle(timeout=15)
    attempts = records(record_file, "fails")
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3]
    assert {a["id"] for a in attempts} == {message_id}
    assert queues.count("fails") == 0
    [poisoned] = queues.peek("fails-poison")
    assert poisoned.content == wire  # the original wire text, as a new message
    assert poisoned.id != message_id
    assert any(
        "Message has reached MaxDequeueCount of 3. Moving message to queue 'fails-poison'." in r.message
        for r in caplog.records
    )


def test_undecodable_message_goes_to_poison_at_once(
    queue_host: LocalHost, record_file: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    queues = open_queues(storage)
    queues.send("jobs", '{"not": "base64"}')
    assert queue_host.wait_idle(timeout=10)
    assert records(record_file, "work") == []  # never invoked
    [poisoned] = queues.peek("jobs-poison")
    assert poisoned.content == '{"not": "base64"}'
    assert poisoned.dequeue_count == 0
    assert any("Message decoding has failed!" in r.message for r in caplog.records)


def test_message_over_max_dequeue_count_is_poisoned_without_invocation(
    record_file: Path, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_QUEUE", "jobs")
    queues = open_queues(storage)
    wire = encode_json({"old": True})
    queues.send("jobs", wire)
    for _ in range(3):  # three earlier deliveries (maxDequeueCount is 3)
        [msg] = queues.receive("jobs", max_messages=1, visibility_timeout=0)
    assert msg.dequeue_count == 3
    host = LocalHost(app_dir=APPS / "queue_app", port=0).start()
    try:
        assert host.wait_idle(timeout=10)
    finally:
        host.stop()
    assert records(record_file, "work") == []
    assert [m.content for m in queues.peek("jobs-poison")] == [wire]


def test_poison_queue_trigger_has_no_poison_queue(
    queue_host: LocalHost, record_file: Path, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="local.host")
    queues = open_queues(storage)
    queues.send("dead-poison", encode_json({"x": 1}))
    # The end state: the host has handled the third failure and left the message invisible. The
    # third invocation's record alone comes before that handling.
    assert wait_for(lambda: any("'dead-poison' has no poison queue" in r.getMessage() for r in caplog.records),
                    timeout=10)
    assert [r["dequeue_count"] for r in records(record_file, "dead")] == [1, 2, 3]
    assert queues.count("dead-poison") == 1  # left invisible, never re-released
    assert queues.count("dead-poison-poison") == 0
    assert queues.receive("dead-poison", max_messages=1, visibility_timeout=0) == []
    assert not queue_host.wait_idle(timeout=0.3)  # the invisible message still counts


def test_wait_idle_waits_for_processing(queue_host: LocalHost, record_file: Path, storage: str) -> None:
    queues = open_queues(storage)
    for i in range(10):
        queues.send("jobs", encode_json({"i": i}))
    assert queue_host.wait_idle(timeout=10)
    assert sorted(json.loads(r["body"])["i"] for r in records(record_file, "work")) == list(range(10))
    assert queues.count("results") == 10


# -- Startup errors, helpers, command line -------------------------------------------------


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("unsupported_trigger.py", "trigger type 'blobTrigger' is not supported"),
        ("two_apps.py", "More than one function app"),
        ("missing_setting.py", "app setting 'LOCAL_HOST_TEST_NO_SUCH_SETTING'"),
        ("param_mismatch.py", "declared in Python but not in the function definition"),
        ("bad_schedule.py", "TimeSpan schedule"),
    ],
)
def test_start_fails_clearly(storage: str, script: str, message: str) -> None:
    path_before = list(sys.path)
    with pytest.raises(HostStartError, match=message):
        LocalHost(app_dir=APPS / "bad_apps", port=0, script=script).start()
    assert sys.path == path_before  # cleaned up after a failed start


def test_route_templates_and_timespans() -> None:
    assert RouteTemplate("users/{id:int}").match("/users/12") == {"id": "12"}
    assert RouteTemplate("users/{id:int}").match("/users/ab") is None
    assert RouteTemplate("Users/{id}").match("/users/x/") == {"id": "x"}
    assert RouteTemplate("a/{b?}").match("/a") == {}
    assert RouteTemplate("a/{b=z}").match("/a") == {"b": "z"}
    assert RouteTemplate("f/{name}.{ext}").match("/f/model.pkl") == {"name": "model", "ext": "pkl"}
    assert parse_timespan("00:00:30") == 30
    assert parse_timespan("1.02:00:00.5") == 86400 + 7200.5
    with pytest.raises(ValueError):
        parse_timespan("30s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_line_runs_until_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "REACTOR_STORAGE": f"sqlite:///{tmp_path / 'q.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.host", "--app-dir", str(APPS / "http_app"), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/admin/host/status", timeout=1).ok
            except requests.ConnectionError:
                return False

        assert wait_for(up, timeout=15)
        assert requests.get(f"http://127.0.0.1:{port}/api/items/7", timeout=5).json()["item_id"] == "7"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "Executed 'Functions.get_item' (Succeeded" in output
    assert "local host stopped" in output


def test_queue_message_base64_helper_roundtrip() -> None:
    # The fixture producers rely on encode_json being what the trigger's base64 decoding expects.
    assert base64.b64decode(encode_json({"a": 1})) == b'{"a":1}'
