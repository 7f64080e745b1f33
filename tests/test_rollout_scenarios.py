"""Rollouts end to end: the real function_app on the local host, the real databricks-sdk over
HTTP against the local workspace, a real MLflow server as the registry."""

from __future__ import annotations

from handlers import watcher
from handlers.deps import current
from shared import rollouts
from shared.queues import COMMANDS_QUEUE, enqueue


def test_a_real_mlflow_webhook_drives_the_rollout_to_a_ready_endpoint(app):
    from local.stack import WEBHOOK_SECRET

    hook = app.client.create_webhook(name=f"reactor-{app.model}", url=f"{app.url}/api/registry/webhook",
                                     events=["model_version.created"], secret=WEBHOOK_SECRET)
    try:
        v = app.register()
        row = app.wait_rollout_end(v)
    finally:
        app.client.delete_webhook(hook.webhook_id)
    assert row["status"] == "done", row
    assert app.serving() == [v]
    assert app.w.serving_endpoints.get(app.endpoint).state.ready.value == "READY"
    assert app.champion() == v
    event = app.records("event")[0]
    assert event["status"] == "done" and event["event"]["version"] == v
    # One correlation id from webhook to alias: the delivery id is the rollout's cid.
    assert row["cid"] == event["id"]


def test_a_broken_version_is_rolled_back_and_champion_stays(app):
    v1 = app.register()
    assert app.post_webhook(app.webhook_body(v1)).status_code == 202
    assert app.wait_rollout_end(v1)["status"] == "done"
    v2 = app.register(broken=True)
    assert app.post_webhook(app.webhook_body(v2)).status_code == 202
    row = app.wait_rollout_end(v2)
    assert row["status"] == "failed"
    assert "smoke query 'one trip' failed" in row["reason"] and "rolled back to versions 1" in row["reason"]
    assert app.serving() == [v1] and app.champion() == v1
    resp = app.w.serving_endpoints.query(app.endpoint, dataframe_records=[{
        "trip_distance": 3.0, "passenger_count": 1, "pickup_hour": 8, "pickup_zone": 1, "dropoff_zone": 2}])
    assert resp.predictions[0] > 0
    # The command that started it carries the outcome.
    (cmd,) = [c for c in app.records("command") if c.get("rollout") == row["id"]]
    assert cmd["status"] == "failed" and "smoke query" in cmd["reason"]


def test_a_version_that_fails_to_load_leaves_the_previous_config_serving(app):
    v1 = app.register()
    app.post_webhook(app.webhook_body(v1))
    assert app.wait_rollout_end(v1)["status"] == "done"
    v2 = app.register()
    app.plat.workspace.faults.fail_load = [f"{app.model}/{v2}"]
    try:
        app.post_webhook(app.webhook_body(v2))
        row = app.wait_rollout_end(v2)
    finally:
        app.plat.workspace.faults.fail_load = []
    assert row["status"] == "failed" and "UPDATE_FAILED" in row["reason"], row["reason"]
    assert app.serving() == [v1] and app.champion() == v1


def test_the_same_webhook_three_times_gives_one_rollout(app):
    v = app.register()
    body = app.webhook_body(v)
    answers = [app.post_webhook(body, delivery="same-delivery").json()["status"] for _ in range(3)]
    # A second webhook (new delivery id) carrying the same event is a duplicate too.
    answers.append(app.post_webhook(body, delivery="other-delivery").json()["status"])
    assert answers == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert app.wait_rollout_end(v)["status"] == "done"
    app.host.wait_idle(10)
    assert len(app.rollouts()) == 1
    assert app.serving() == [v] and app.champion() == v


def test_a_crash_between_steps_still_gives_one_healthy_rollout(app, monkeypatch):
    real_advance = rollouts.advance
    crashed = []

    def crash_once_after_deploy(tables, entity, note, **changes):
        if entity.data["step"] == "deploy" and not crashed:
            crashed.append(entity.data["id"])
            raise RuntimeError("injected crash after the endpoint was written")
        return real_advance(tables, entity, note, **changes)

    monkeypatch.setattr(rollouts, "advance", crash_once_after_deploy)
    v = app.register()
    app.post_webhook(app.webhook_body(v))
    row = app.wait_rollout_end(v, timeout=90)
    assert crashed, "the fault was not injected"
    assert row["status"] == "done", row
    assert len(app.rollouts()) == 1
    assert app.serving() == [v] and app.champion() == v
    ep = app.w.serving_endpoints.get(app.endpoint)
    assert ep.state.config_update.value == "NOT_UPDATING" and ep.config.config_version == 1


def test_a_newer_version_supersedes_a_queued_older_one_and_never_interleaves(app):
    v1, v2, v3 = app.register(), app.register(), app.register()
    app.plat.workspace.faults.provisioning_seconds = 2.0
    try:
        def deploy(v):
            enqueue(app.queues, COMMANDS_QUEUE, {"command": "deploy", "model": app.model, "environment": "prod",
                                                 "version": v})

        deploy(v1)
        app.wait(lambda: any(r["step"] == "wait_deploy" for r in app.rollouts(v1)), what="v1 to write the endpoint")
        deploy(v2)
        app.wait(lambda: app.rollouts(v2), what="v2 to be queued")
        deploy(v3)
        rows = {v: app.wait_rollout_end(v, timeout=90) for v in (v1, v3)}
    finally:
        app.plat.workspace.faults.provisioning_seconds = 0.5
    (r2,) = app.rollouts(v2)
    assert r2["status"] == "superseded" and rows[v3]["id"] in r2["reason"]
    assert rows[v1]["status"] == "done" and rows[v3]["status"] == "done"
    # v3 wrote the endpoint only after v1 had finished.
    v3_deploy = next(h["at"] for h in rows[v3]["history"] if h["step"] == "deploy")
    assert v3_deploy >= rows[v1]["finished_at"]
    assert app.serving() == [v3] and app.champion() == v3
    superseded_cmd = [c for c in app.records("command") if c.get("rollout") == r2["id"]]
    assert superseded_cmd and superseded_cmd[0]["status"] == "superseded"


def test_the_watcher_notices_a_version_no_webhook_announced(app):
    v = app.register()
    deps = current()
    assert watcher.tick(deps)["noticed"] == 1
    assert app.wait_rollout_end(v)["status"] == "done"
    assert app.serving() == [v] and app.champion() == v
    # Our own @Champion change is a registry change: one more reconcile, which finds nothing to do.
    assert watcher.tick(deps)["noticed"] == 1
    app.host.wait_idle(10)
    assert watcher.tick(deps)["noticed"] == 0
    assert len(app.rollouts()) == 1
    assert "already serves" in app.records("command")[-1]["outcome"][0]


def test_a_cloudevents_deploy_command_from_another_system(app):
    v = app.register()
    enqueue(app.queues, COMMANDS_QUEUE, {
        "specversion": "1.0", "id": "ci-run-77", "source": "/pipelines/taxi", "type": "com.modelops.reactor.deploy.v1",
        "datacontenttype": "application/json", "data": {"model": app.model, "environment": "prod", "version": v},
    })
    row = app.wait_rollout_end(v)
    assert row["status"] == "done" and row["cid"] == "ci-run-77"
    cmd = next(c for c in app.records("command") if c["id"] == "ci-run-77")
    assert cmd["status"] == "done" and cmd["source"] == "/pipelines/taxi"
    assert app.serving() == [v]


def test_reconcile_does_not_retry_a_failed_version_but_deploy_does(app):
    v1 = app.register()
    app.post_webhook(app.webhook_body(v1))
    app.wait_rollout_end(v1)
    v2 = app.register(broken=True)
    app.post_webhook(app.webhook_body(v2))
    assert app.wait_rollout_end(v2)["status"] == "failed"
    enqueue(app.queues, COMMANDS_QUEUE, {"command": "reconcile", "model": app.model})
    app.host.wait_idle(15)
    assert len(app.rollouts(v2)) == 1
    last = app.records("command")[-1]
    assert last["status"] == "done" and "failed before" in last["outcome"][0]


def test_concurrent_reconciles_for_one_version_start_one_rollout(app):
    v = app.register()
    for _ in range(4):  # the host takes them in one batch and runs them in parallel
        enqueue(app.queues, COMMANDS_QUEUE, {"command": "reconcile", "model": app.model})
    assert app.wait_rollout_end(v)["status"] == "done"
    assert app.host.wait_idle(15)
    assert len(app.rollouts()) == 1
    cmds = app.records("command")
    assert len(cmds) == 4 and all(c["status"] == "done" for c in cmds), cmds


def test_a_first_version_that_fails_its_smoke_query_is_not_left_serving(app):
    from databricks.sdk.errors import NotFound

    v1 = app.register(broken=True)
    assert app.post_webhook(app.webhook_body(v1)).status_code == 202
    row = app.wait_rollout_end(v1)
    assert row["status"] == "failed" and "smoke query 'one trip' failed" in row["reason"]
    assert "the endpoint served nothing before, so it was deleted" in row["reason"]
    try:
        app.w.serving_endpoints.get(app.endpoint)
        raise AssertionError("the endpoint still exists")
    except NotFound:
        pass
    assert app.champion() is None


def test_concurrent_deliveries_with_one_delivery_id_act_once_over_http(app):
    import threading

    v = app.register()
    body = app.webhook_body(v)
    for n in range(30):
        answers: list[str] = []
        barrier = threading.Barrier(2)

        event = body.replace(b"Z", f"{n}Z".encode())  # a distinct event per pair

        def deliver(n=n, answers=answers, barrier=barrier, event=event):
            barrier.wait()
            answers.append(app.post_webhook(event, delivery=f"pair-{n}").json()["status"])

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers) == ["accepted", "duplicate"], (n, answers)
    app.host.wait_idle(30)
    cmds = [c for c in app.records("command") if c.get("command", {}).get("command") == "reconcile"]
    assert len(cmds) == 30 and len(app.rollouts()) == 1
