"""The operators' CLI (reactor/cli.py) against the real stack: one Function App on the local host
for the module (MLflow server, local workspace, SQLite state), its state made by the app itself —
a version deployed with ``deploy --wait``, a canary paused for too little traffic, promoted over
the HTTP backend with the host key — and read back through both backends, with the exit codes
the module docstring promises."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from local.stack import HOST_KEY, app_settings, function_host
from reactor import render
from reactor.cli import main
from shared.monitoring import store as monitor_store
from shared.queues import COMMANDS_QUEUE
from shared.storage import open_queues, open_tables
from tests.conftest import NEVER, App, policy_yaml

ROOT = Path(__file__).resolve().parent.parent
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ANALYSIS = {"delivery_delay": "1s", "min_requests": 25, "error_rate": {"margin": 0.15},
            "latency": {"max_ratio": 5.0}, "prediction_shift": {"metric": "ks", "threshold": 0.5},
            "on_inconclusive": "pause"}


@pytest.fixture(scope="module")
def app(plat, tmp_path_factory) -> Iterator[App]:
    """One app for the module: a canary of one 30% step whose analysis pauses without traffic."""
    d = tmp_path_factory.mktemp("cli")
    tag = uuid.uuid4().hex[:8]
    model, endpoint = f"taxi_{tag}", f"taxi-{tag}"
    policy = d / "policy.yaml"
    policy.write_text(policy_yaml(
        model, endpoint, inference_table={"catalog": "main", "schema": "monitoring", "prefix": f"cli_{tag}"},
        aliases={"challenger": "Challenger", "champion": ["Champion"], "production": "Production"},
        strategy={"kind": "canary", "steps": [{"weight": 30, "bake": "1s"}], "bake": "0s", "abort_delay": "0s",
                  "analysis": ANALYSIS}))
    settings = app_settings(data_dir=d, policy=policy, mlflow_url=plat.mlflow.url, workspace_url=plat.workspace.url,
                            watch_schedule=NEVER)
    with function_host(settings) as host:
        url = settings["REACTOR_STORAGE"]
        yield App(plat, model, endpoint, settings, tag, host.url, host, open_tables(url, settings),
                  open_queues(url, settings))


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


def store_args(app: App) -> list[str]:
    return ["--storage", app.settings["REACTOR_STORAGE"], "--policy", app.settings["REACTOR_POLICY_FILE"]]


def http_args(app: App, key: str | None = HOST_KEY) -> list[str]:
    return ["--url", f"{app.url}/api", *(["--key", key] if key else [])]


def status_of(app: App, *args: str) -> tuple[int, dict[str, Any]]:
    rc, out, _ = cli("status", "--json", *args)
    (entry,) = json.loads(out)
    return rc, entry


def test_policy_check_says_ok_for_a_good_file_and_names_the_key_of_a_bad_one(tmp_path):
    rc, out, _ = cli("policy", "check", str(ROOT / "policy.yaml"))
    assert rc == 0 and out.startswith(f"{ROOT / 'policy.yaml'}: ok, 1 model(s), 1 environment(s): taxi_fare/prod")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nmodels:\n  - name: m\n    environments:\n      prod: {endpoint: 'no spaces allowed'}\n")
    rc, out, err = cli("policy", "check", str(bad), "--json")
    assert rc == 1 and "models[0].environments.prod.endpoint" in err
    assert json.loads(out)["valid"] is False
    assert cli("policy", "check", str(tmp_path / "missing.yaml"))[0] == 3


def test_policy_check_refuses_aliases_for_the_workspace_registry_as_the_app_does():
    rc, _, err = cli("policy", "check", str(ROOT / "policy.yaml"), "--registry-uri", "databricks")
    assert rc == 1 and "workspace model registry" in err and "taxi_fare" in err
    assert cli("policy", "check", str(ROOT / "policy.yaml"), "--registry-uri", "databricks-uc")[0] == 0


def test_a_bad_command_argument_is_a_usage_error_and_nothing_is_sent(app):
    before = len(app.records("command"))
    got = subprocess.run([sys.executable, "-m", "reactor", "deploy", app.model, "prod", "--version", "v2",
                          *store_args(app)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "deploy.version: String should match pattern" in got.stderr, got.stderr
    assert got.stderr.startswith("usage: reactor deploy "), got.stderr  # the subcommand's usage, not the top's
    got = subprocess.run([sys.executable, "-m", "reactor", "promote", app.model, "prod", "--rollout", "not-an-id",
                          *store_args(app)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and "promote.rollout" in got.stderr
    help_text = subprocess.run([sys.executable, "-m", "reactor", "rollout", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=60)
    assert help_text.returncode == 0 and "--json" in help_text.stdout and "--storage" in help_text.stdout
    assert app.queues.count(COMMANDS_QUEUE) == 0 and len(app.records("command")) == before


def test_deploy_with_wait_follows_its_record_and_rollout_to_done(app):
    v1 = app.register()
    rc, out, err = cli("deploy", app.model, "prod", "--version", v1, "--wait", "--timeout", "90", *store_args(app))
    assert rc == 0, out + err
    lines = out.splitlines()
    assert lines[0].startswith(f"sent deploy {app.model}/prod: record command id:cli-")
    (row,) = app.rollouts(v1)
    assert row["status"] == "done" and lines[-1].startswith(f"done: rollout {row['id']}: version {v1} serves"), out
    # Each step of the rollout with its own note (a note ends the step it names), in order; a
    # wait that found the same again is printed once.
    steps = [f"rollout {row['id']} v{v1} {h['step']}: {h['note']}" for h in row["history"]]
    steps = [ln for i, ln in enumerate(steps) if i == 0 or ln != steps[i - 1]]
    assert any(ln.endswith(f" smoke: 1 smoke queries passed on served entity {app.model}-{v1}") for ln in steps)
    printed = [ln.split("] ", 1)[1] for ln in lines if "] " in ln]
    assert [ln for ln in printed if ln in steps] == steps, out
    rc, entry = status_of(app, *store_args(app))
    assert rc == 0 and entry["attention"] == []
    assert entry["serving"] == [{"entity": f"{app.model}-{v1}", "version": v1, "traffic": 100}]
    assert entry["aliases"] == {"Champion": v1} and entry["serving_version"] == v1
    assert entry["rollout"]["status"] == "done" and entry["rollout"]["version"] == v1


def test_a_paused_canary_shows_in_status_rollouts_and_its_timeline(app):
    v1 = app.registered[0]
    v2 = app.register()
    app.post_webhook(app.webhook_body(v2))
    row = app.wait(lambda: next((r for r in app.rollouts(v2) if r.get("paused")), None), 60, "the pause")

    rc, entry = status_of(app, *store_args(app))
    assert rc == 1
    assert [(s["version"], s["traffic"]) for s in entry["serving"]] == [(v1, 70), (v2, 30)]
    assert entry["aliases"] == {"Champion": v1, "Challenger": v2}
    assert entry["rollout"]["id"] == row["id"] and "Inconclusive" in entry["rollout"]["paused"]
    assert entry["attention"] == [f"rollout {row['id']} of version {v2} paused: {row['paused']['reason']}"]
    rc, text, _ = cli("status", *store_args(app))
    assert rc == 1 and f"serving   v{v1} 70%, v{v2} 30%" in text and f"@Challenger v{v2}" in text
    assert f"  ! rollout {row['id']}" in text

    rc, out, _ = cli("rollouts", "--model", app.model, "--json", *store_args(app))
    assert rc == 0 and [r["version"] for r in json.loads(out)] == [v2, v1]
    assert all(ISO.fullmatch(r["created_at"]) and ISO.fullmatch(r["updated_at"]) for r in json.loads(out))
    # Global flags before the subcommand; the table names whole facts with ISO times.
    rc, text, _ = cli(*store_args(app), "-o", "wide", "rollouts")
    header, first, *_ = text.splitlines()
    assert header.split()[:8] == ["ROLLOUT", "MODEL/ENV", "VERSION", "STATUS", "STEP", "CREATED", "TOOK", "WEIGHT"]
    assert first.split()[:5] == [row["id"], f"{app.model}/prod", v2, "paused", row["step"]]
    assert ISO.fullmatch(first.split()[5]) and first.split()[7] == "30%"
    rc, out, _ = cli("rollouts", "--status", "paused", "--json", *store_args(app))
    assert [r["id"] for r in json.loads(out)] == [row["id"]]

    rc, text, _ = cli("rollout", row["id"], *store_args(app))
    assert rc == 1, text
    assert re.search(r"  created   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text), text
    assert f"version {v2}" in text and "paused: analysis Inconclusive" in text
    assert "  timeline" in text and " smoke " in text and "  analysis" in text
    assert "stage 0 run 1 at 30%: Inconclusive" in text and "error_rate" in text
    rc, out, _ = cli("rollout", row["id"], "--json", *store_args(app))
    got = json.loads(out)
    assert all(ISO.fullmatch(h["at"]) for h in got["rollout"]["history"])
    assert [a["phase"] for a in got["analyses"]] == ["Inconclusive"]
    assert cli("rollout", "f" * 24, *store_args(app))[0] == 3

    # A deploy of the version rolling out joins that rollout and waits for its end: paused, it
    # times out, saying how to re-attach (a later test does, once the rollout is promoted).
    rc, out, err = cli("deploy", app.model, "prod", "--version", v2, "--id", f"join-{app.tag}", "--wait",
                       "--timeout", "2", *store_args(app))
    assert rc == 5, out + err
    assert f"rollout {row['id']} did not end yet after 2 s" in err
    assert f"Re-attach with: reactor wait id:join-{app.tag} --storage " in err


def test_the_http_backend_reads_and_steers_with_the_key_and_is_refused_without_it(app):
    v2 = app.registered[1]
    rc, _, err = cli("status", *http_args(app, key=None))
    assert rc == 4 and "401 unauthorized" in err and "--key" in err
    assert requests.get(f"{app.url}/api/status", timeout=10).status_code == 401
    assert requests.post(f"{app.url}/api/commands", data=b"{}", timeout=10).status_code == 401
    _, stored = status_of(app, *store_args(app))
    rc, over_http = status_of(app, *http_args(app))
    assert rc == 1 and over_http == stored

    rc, out, err = cli("promote", app.model, "prod", "--reason", "enough", "--wait", "--timeout", "60",
                       *http_args(app))
    assert rc == 0, out + err
    (row,) = app.rollouts(v2)  # what the rollout reached when the CLI returned: promote goes to 100%
    assert row["status"] == "done" and out.splitlines()[-1] == f"done: rollout {row['id']}: done, at end", out
    # The deploy that joined it and timed out: re-attached, it ends with the rollout.
    rc, out, err = cli("wait", f"id:join-{app.tag}", "--timeout", "30", *http_args(app))
    assert rc == 0 and out.splitlines()[-1] == f"done: rollout {row['id']}: done, at end", out + err
    assert cli("wait", "id:nothing-sent-under-this", *http_args(app))[0] == 3
    rc, entry = status_of(app, *http_args(app))
    assert rc == 0 and entry["serving"] == [{"entity": f"{app.model}-{v2}", "version": v2, "traffic": 100}]
    assert entry["aliases"] == {"Champion": v2}


def steer(app: App, *argv: str) -> tuple[int, dict[str, Any]]:
    """A steering command with --wait --json: its exit code and the rollout as the CLI left it."""
    rc, out, err = cli(*argv[:1], app.model, "prod", *argv[1:], "--wait", "--timeout", "60", "--json",
                       *store_args(app))
    assert out, err
    return rc, json.loads(out)


def test_steering_commands_wait_for_the_state_they_ask_for(app):
    v2 = app.registered[1]
    v3 = app.register()
    app.post_webhook(app.webhook_body(v3))
    first = app.wait(lambda: next((r for r in app.rollouts(v3) if r["status"] == "running"), None), 60, "the rollout")
    rc, got = steer(app, "pause", "--reason", "looking")
    assert rc == 0 and got["result"] == "ok" and got["rollout"]["id"] == first["id"], got
    assert got["rollout"]["paused"]["reason"] == "looking"
    # Paused already: the CLI cannot know it from the summary's rules, the app refuses it.
    rc, got = steer(app, "pause", "--reason", "again")
    assert rc == 6 and got["result"] == "refused" and "already paused" in got["outcome"], got
    rc, got = steer(app, "resume", "--reason", "go on")
    assert rc == 0 and got["rollout"]["paused"] is None, got

    row = app.wait(lambda: next((r for r in app.rollouts(v3) if r.get("paused")), None), 60, "the analysis pause")
    rc, got = steer(app, "abort", "--reason", "latency alarm")
    assert rc == 0 and got["rollout"]["status"] == "aborted", got
    assert app.rollouts(v3)[0]["status"] == "aborted"
    rc, entry = status_of(app, *store_args(app))
    assert rc == 0 and entry["rollout"]["id"] == row["id"] and entry["rollout"]["status"] == "aborted"
    note = (f"the last rollout (version {v3}) ended aborted: aborted by an operator: latency alarm (rolled back to "
            f"versions {v2})")
    assert entry["attention"] == [note]
    rc, text, _ = cli(*http_args(app), "status")
    assert rc == 0 and text.splitlines()[0].endswith(f"endpoint {app.endpoint}  ok") and f"  · {note}" in text
    assert entry["serving"] == [{"entity": f"{app.model}-{v2}", "version": v2, "traffic": 100}]
    assert entry["aliases"] == {"Champion": v2} and entry["serving_version"] == v2
    assert entry["failed_versions"] == {v3: entry["rollout"]["reason"]}
    rc, out, _ = cli("rollouts", "--status", "aborted", "--json", *http_args(app))
    assert rc == 0 and [r["version"] for r in json.loads(out)] == [v3]

    v4 = app.register()
    app.post_webhook(app.webhook_body(v4))
    app.wait(lambda: next((r for r in app.rollouts(v4) if r.get("paused")), None), 60, "the pause of v4")
    rc, got = steer(app, "rollback", "--reason", "bad canary")
    assert rc == 0 and got["rollout"]["status"] == "rolled_back", got
    assert app.rollouts(v4)[0]["status"] == "rolled_back"


def test_a_malformed_command_over_http_is_a_400_counted_and_never_sent(app):
    key = {"x-functions-key": HOST_KEY}
    before = len(app.records("command"))
    for body in (b"{", b'{"command": "deploy", "model": "m"}', b'{"command": "redrive", "record": "id:x"}'):
        resp = requests.post(f"{app.url}/api/commands", data=body, headers=key, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"].startswith("invalid command: "), resp.text
    assert app.host.wait_idle(15)
    assert app.queues.count(COMMANDS_QUEUE) == 0 and len(app.records("command")) == before
    rc, out, _ = cli("records", "--kind", "rejections", "--json", *http_args(app))
    assert rc == 0 and json.loads(out)["400"]["counts"]["by_code"]["bad_command"] == 3
    assert requests.get(f"{app.url}/api/records", params={"kind": "command", "key": "a/b"}, headers=key,
                        timeout=10).status_code == 400


def test_a_command_that_cannot_apply_is_refused_before_it_is_sent_or_by_the_app(app):
    before = len(app.records("command"))
    rc, out, err = cli("resume", app.model, "prod", "--wait", "--timeout", "30", *store_args(app))
    assert rc == 6 and out == "", out
    assert f"reactor: refused, not sent: no rollout in progress on endpoint {app.endpoint} (the last one, " in err
    assert "ended rolled_back)" in err
    assert cli("abort", app.model, "prod", "--rollout", "f" * 24, *store_args(app))[0] == 6
    assert len(app.records("command")) == before
    # This environment has no retraining job: the app refuses it, and --wait says so.
    rc, out, err = cli("retrain", app.model, "prod", "--reason", "try", "--wait", "--timeout", "30",
                       *http_args(app))
    assert rc == 6 and "refused: refused by the app: " in out and "has no retraining job" in err, out + err
    rc, out, _ = cli("records", "--status", "rejected", "--json", *store_args(app))
    rejected = json.loads(out)
    assert rc == 0 and sorted(r["command"]["command"] for r in rejected) == ["pause", "retrain"]
    rc, text, _ = cli("records", "--kind", "command", *store_args(app))
    assert rc == 0 and "rejected" in text and "promote" in text and "deploy" in text


def test_monitor_prints_the_latest_figures_against_their_thresholds(app):
    rc, out, _ = cli("monitor", *store_args(app))
    assert rc == 0 and out.splitlines() == [f"{app.model}/prod  endpoint {app.endpoint}", "  no decision yet"]
    figures = [{"check": "psi(trip_distance)", "value": 1.93, "threshold": 0.25, "clear": 0.2, "direction": "above",
                "rows": 200, "verdict": "violation", "group": "psi(trip_distance)"},
               {"check": "rmse(label)", "value": 3.1, "threshold": 5.0, "clear": 4.0, "direction": "above",
                "rows": 200, "verdict": "ok", "group": "rmse(label)"}]
    monitor_store.record_decision(app.tables, app.endpoint, {
        "model": app.model, "environment": "prod", "version": app.registered[1], "verdict": "violation",
        "reason": "1 of the last 1 window(s) violate, the latest among them", "action": "retrain",
        "window": {"start": 1_790_000_000.0, "end": 1_790_000_010.0}, "figures": figures}, now=1_790_000_020.0)
    rc, out, _ = cli("monitor", *http_args(app))
    assert rc == 1
    assert "  psi(trip_distance) 1.93 (alert > 0.25) ✘" in out and "  rmse(label) 3.1 (alert > 5) ✔" in out
    rc, entry = status_of(app, *store_args(app))
    assert rc == 1 and entry["attention"][-1] == (f"monitor: version {app.registered[1]} violation: 1 of the last 1 "
                                                  "window(s) violate, the latest among them")


def test_unreachable_backends_and_unknown_models_have_their_exit_codes(app, tmp_path):
    rc, _, err = cli("status", "--url", "http://127.0.0.1:9/api", "--key", HOST_KEY)
    assert rc == 4 and "cannot reach" in err and HOST_KEY not in err
    rc, _, err = cli("status", "--storage", f"sqlite:///{tmp_path / 'nowhere.db'}")
    assert rc == 4 and "no such database file" in err
    assert cli("status", "--model", "nope", *store_args(app))[0] == 3
    rc, _, err = cli("status", "--model", app.model[:-1], *store_args(app))
    assert rc == 3 and f"did you mean '{app.model}'?" in err
    with pytest.raises(SystemExit) as exc:
        cli("status", "--storage", "sqlite:///x", "--url", "http://h/api")
    assert exc.value.code == 2
    both = subprocess.run([sys.executable, "-m", "reactor", "status", "--storage", "sqlite:///x", "--url", "http://h/api"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and both.stderr.startswith("usage: reactor status "), both.stderr


def test_the_azure_storage_backend_sends_commands_as_the_queue_trigger_reads_them(azurite, monkeypatch):
    """``--storage azure:<connection>`` (Azurite): the command lands on reactor-commands base64-encoded,
    and parses as the queue handler parses it; the status reads the (empty) state of the policy."""
    from shared.commands import parse
    from shared.queues import decode_content

    monkeypatch.setenv("CLI_TEST_STORAGE", azurite.connection_string)
    args = ["--storage", "azure:CLI_TEST_STORAGE", "--policy", str(ROOT / "policy.yaml")]
    queues = open_queues("azure:CLI_TEST_STORAGE")
    rc, out, err = cli("deploy", "taxi_fare", "prod", "--version", "1", "--id", "cli-azure-1", "--json", *args)
    assert rc == 0 and json.loads(out)["record"] == "id:cli-azure-1", err
    (msg,) = [m for m in queues.receive(COMMANDS_QUEUE, max_messages=32, visibility_timeout=30)
              if b"cli-azure-1" in decode_content(m.content)]
    queues.delete(COMMANDS_QUEUE, msg.id, msg.pop_receipt)  # no app of another test takes it
    env = parse(decode_content(msg.content), msg.id)
    assert env.key == "id:cli-azure-1" and env.command.command == "deploy" and env.command.version == "1"
    rc, out, _ = cli("status", "--json", *args)
    (entry,) = json.loads(out)
    assert rc == 0 and entry["model"] == "taxi_fare" and entry["serving"] == [] and entry["rollout"] is None
    rc, _, err = cli("status", "--storage", "azure:CLI_TEST_NOT_SET", "--policy", str(ROOT / "policy.yaml"))
    assert rc == 4 and "CLI_TEST_NOT_SET" in err and "is not set" in err


def test_over_the_host_an_id_names_one_payload_and_a_hostile_command_is_a_400(app):
    """POST /api/commands through the Functions host: an id reused with another payload is a
    400 and changes nothing, the same payload answers the first record, a deeply nested body is a
    400 (it was a 503, retried for ever), and an in-limit CloudEvent with non-ASCII text is taken."""
    key = {"x-functions-key": HOST_KEY}

    def post(body: Any) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return requests.post(f"{app.url}/api/commands", data=data, headers=key, timeout=10)

    nested = b'{"command": "deploy", "model": "m", "environment": "p", "x": ' + b"[" * 24000 + b"]" * 24000 + b"}"
    resp = post(nested)
    assert resp.status_code == 400 and "nested deeper than" in resp.json()["error"], resp.text
    first = {"command": "reconcile", "model": f"unknown_{app.tag}", "id": f"intake-{app.tag}"}
    resp = post(first)
    assert resp.status_code == 202 and resp.json()["status"] == "accepted", resp.text
    record = resp.json()["record"]
    done = app.wait(lambda: next((r for r in app.records("command") if r["key"] == record
                                  and r["status"] == "done"), None), 30, "the first command")
    resp = post({**first, "model": f"other_{app.tag}"})
    assert resp.status_code == 400 and "was already used for a different command" in resp.json()["error"]
    resp = post(first)
    assert resp.status_code == 202 and resp.json()["status"] == "duplicate" and resp.json()["first"] == done
    event = {"specversion": "1.0", "id": f"ce-{app.tag}", "source": "/ci", "subject": "€" * 16000,
             "type": "com.modelops.reactor.reconcile.v1", "data": {"model": f"unknown_{app.tag}"}}
    assert post(event).status_code == 202
    assert app.host.wait_idle(15)
    assert [r for r in app.records("command") if r.get("id") == f"intake-{app.tag}"] == [done]


RETRAIN_POLICY = """
models:
  - name: churn
    environments:
      prod:
        endpoint: churn-{tag}
        retraining: {{job_id: 7}}
        inference_table: {{catalog: main, schema: mon}}
        monitoring:
          checks: [{{metric: psi, of: features, threshold: 0.2}}]
          decision: {{action: retrain, cooldown: 1h}}
"""


def test_status_and_monitor_show_the_retraining_and_a_retrain_inside_the_cooldown_is_not_sent(tmp_path):
    """The last action, its run, the version it registered and that version's rollout, read by
    point reads from what the monitor keeps (written here as handlers/monitor.py writes it), in
    the text of status and monitor; a retrain inside the cooldown is refused before it is sent."""
    from shared import journal

    tag = uuid.uuid4().hex[:8]
    url, policy = f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "policy.yaml"
    policy.write_text(RETRAIN_POLICY.format(tag=tag))
    tables, queues = open_tables(url), open_queues(url)
    args = ["--storage", url, "--policy", str(policy)]
    endpoint = f"churn-{tag}"
    assert cli("status", "--json", *args)[1].count('"retraining": null') == 1

    now = time.time()
    d = monitor_store.record_decision(tables, endpoint, {
        "model": "churn", "environment": "prod", "version": "3", "verdict": "violation", "reason": "psi drifted",
        "action": "retrain", "window": {"start": now - 3600, "end": now}, "figures": []}, now=now)
    assert monitor_store.take_action(tables, endpoint, d["id"], now=now, cooldown_seconds=3600)
    monitor_store.update_decision(tables, endpoint, d["id"], run={
        "job_id": 7, "run_id": 4242, "state": "TERMINATED", "result": "FAILED", "message": "OOM", "url": "u"})
    rc, text, _ = cli("status", *args)
    assert rc == 1 and f"  retrain   retrain at {render.when(d['at'])} (decision {d['id']})" in text, text
    assert "            run 4242 TERMINATED/FAILED: OOM" in text
    assert "  ! retraining run 4242 ended FAILED: OOM" in text
    rc, text, _ = cli("monitor", *args)
    assert rc == 1 and "  action: retrain" in text and "run 4242 TERMINATED/FAILED: OOM" in text, text

    # A later run succeeded and registered version 4, whose rollout names the decision.
    monitor_store.update_decision(tables, endpoint, d["id"], run={
        "job_id": 7, "run_id": 4243, "state": "TERMINATED", "result": "SUCCESS", "message": "", "url": "u"},
        rollout={"id": "a" * 24, "version": "4", "status": "done"})
    rc, entry = status_of_args(args)
    assert entry["retraining"]["run"] == {"run_id": 4243, "state": "TERMINATED", "result": "SUCCESS", "message": ""}
    assert entry["retraining"]["version"] == "4" and entry["retraining"]["rollout"]["status"] == "done"
    assert entry["retraining"]["cooldown_until"] == pytest.approx(now + 3600, abs=0.01)
    rc, text, _ = cli("monitor", *args)
    assert rc == 1 and f"registered v4: rollout {'a' * 24} done" in text, text

    rc, out, err = cli("retrain", "churn", "prod", "--reason", "again", "--wait", *args)
    assert rc == 6 and out == "" and "reactor: refused, not sent: cooldown: the last action (retrain) was " in err
    assert queues.count(COMMANDS_QUEUE) == 0 and journal.list_records(tables, "command") == []


def status_of_args(args: list[str]) -> tuple[int, dict[str, Any]]:
    rc, out, _ = cli("status", "--json", *args)
    (entry,) = json.loads(out)
    return rc, entry


def test_a_retrain_that_launched_nothing_is_refused_when_waited_on(tmp_path):
    """``reactor wait`` on a retrain whose record ended done with the app's cooldown outcome
    (handlers/monitor.py, as the app records it): exit 6, saying why."""
    from shared import journal

    tag = uuid.uuid4().hex[:8]
    url, policy = f"sqlite:///{tmp_path / 'state.db'}", tmp_path / "policy.yaml"
    policy.write_text(RETRAIN_POLICY.format(tag=tag))
    tables = open_tables(url)
    journal.record(tables, "command", "id:r1", "done", command={"command": "retrain", "model": "churn",
                                                                "environment": "prod", "reason": "x"},
                   outcome=["cooldown: the last action was 151 s ago; the cooldown is 3600 s"])
    rc, out, err = cli("wait", "id:r1", "--timeout", "5", "--storage", url, "--policy", str(policy))
    assert rc == 6 and out.splitlines()[-1] == ("refused: launched nothing: cooldown: the last action was 151 s ago; "
                                                "the cooldown is 3600 s"), out + err


def test_the_countdown_says_what_is_left_while_baking_and_what_is_waited_for():
    from reactor.follow import _countdown

    row = {"status": "running", "step": "bake", "weight": 30, "bake_until": 1_000.0}
    assert _countdown(row, 975.0) == (25.0, "baking at 30%: 25 s left")
    assert _countdown({**row, "paused": {"reason": "x"}}, 975.0) is None
    assert _countdown({"status": "running", "step": "analyze", "weight": 30, "due_at": 1_010.0}, 1_000.0) == (
        10.0, "analysing at 30%, waiting for traffic: next look in 10 s")
    assert _countdown({"status": "running", "step": "wait_shift", "wait_started": 900.0}, 1_000.0) == (
        100.0, "waiting for the endpoint at wait_shift: 100 s so far")
    assert _countdown({"status": "done", "step": "end"}, 1_000.0) is None
def test_a_misspelt_status_is_a_usage_error_and_the_listing_is_not_printed(app):
    got = subprocess.run([sys.executable, "-m", "reactor", "records", "--status", "faild", *store_args(app)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert got.returncode == 2 and got.stdout == "", got.stdout
    assert got.stderr.startswith("usage: reactor records ") and "did you mean 'failed'?" in got.stderr


@pytest.mark.parametrize("backend", ["storage", "url"])
def test_a_reader_gone_ends_the_listing_quietly_on_either_backend(app, backend, tmp_path):
    """``reactor records | head -1``, head gone: exit 141, nothing on stderr (it was exit 4, and a
    traceback over --url). The pipe's read end is closed before the CLI writes."""
    r, w = os.pipe()
    os.close(r)
    args = store_args(app) if backend == "storage" else http_args(app)
    got = subprocess.run([sys.executable, "-m", "reactor", "records", *args], stdout=w, stderr=subprocess.PIPE,
                         cwd=ROOT, timeout=60)
    os.close(w)
    assert (got.returncode, got.stderr) == (141, b"")


def test_the_cli_answers_alike_from_any_folder(app, tmp_path):
    """Run from elsewhere (the package importable, as ``pip install -e .`` makes it): with no
    --policy nor $REACTOR_POLICY_FILE, the status reads the checkout's policy.yaml, as the app does."""
    env = {k: v for k, v in os.environ.items() if k not in ("REACTOR_POLICY_FILE", "REACTOR_STORAGE")}
    got = subprocess.run([sys.executable, "-m", "reactor", "status", "-o", "json", "--storage",
                          app.settings["REACTOR_STORAGE"]], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert got.returncode == 0, got.stderr
    assert [(e["model"], e["environment"]) for e in json.loads(got.stdout)] == [("taxi_fare", "prod")]
