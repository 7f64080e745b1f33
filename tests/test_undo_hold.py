"""Undo a finished rollout, and make it stick (issue 22, item 1).

``rollback`` after a rollout ended done rolls the previous champion out again (smoke first) and
holds the environment at it; while held, a webhook, a watcher tick, an alias move and a
retraining decision's deploy leave it where it is, every view shows the hold, and ``release``
lets reconcile move it again. Driven through the engine harness (tests/engine.py): the real
queue handlers over SQLite storage.
"""

from __future__ import annotations

import json
import uuid

import pytest

from handlers import commands, watcher
from handlers.http_types import Request
from reactor.cli import command_of, main, parser
from shared import journal, overview, rollouts
from shared.commands import CommandRejected, parse
from shared.signatures import mlflow_signature
from tests.engine import ENDPOINT, MODEL, SECRET, Driver


def _record(d: Driver, ident: str) -> dict:
    rec = journal.get(d.raw_tables, "command", journal.key("id", ident))
    assert rec is not None, ident
    return rec


def _send(d: Driver, ident: str, **fields) -> dict:
    d.command({"schema_version": 1, "id": ident, "model": MODEL, "environment": "prod", **fields})
    d.run()
    return _record(d, ident)


def _two_versions(d: Driver) -> tuple[str, str]:
    v1 = d.registry.register()
    d.webhook(v1)
    d.run()
    v2 = d.registry.register()
    d.webhook(v2)
    d.run()
    assert d.serving_api.serving(ENDPOINT) == [v2]
    assert d.registry.aliases["Champion"] == v2
    return v1, v2


def _alias_moved(d: Driver, alias: str, version: str) -> None:
    from handlers import webhook

    d.registry.set_registered_model_alias(MODEL, alias, version)
    body = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": f"a{version}",
                       "data": {"name": MODEL, "alias": alias, "version": version}}).encode()
    delivery, stamp = str(uuid.uuid4()), str(int(d.clock.now))
    headers = {"x-mlflow-delivery-id": delivery, "x-mlflow-timestamp": stamp,
               "x-mlflow-signature": mlflow_signature(SECRET, delivery, stamp, body)}
    assert webhook.handle(d.deps, Request("POST", body, headers)).status == 202


def _hold(d: Driver) -> dict | None:
    return rollouts.lease(d.raw_tables, ENDPOINT).get("hold")


def test_rollback_after_done_redeploys_the_previous_champion_and_holds_it(tmp_path):
    d = Driver(tmp_path)
    v1, _ = _two_versions(d)
    rec = _send(d, "undo-1", command="rollback", reason="bad release")
    assert rec["status"] == "done", rec
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert d.registry.aliases["Champion"] == v1
    undo = d.rollouts()[-1]
    assert undo["version"] == v1 and undo["status"] == "done"
    assert any(h["step"] == "smoke" for h in undo["history"]), "the undo goes through the zero-traffic smoke"
    hold = _hold(d)
    assert hold["version"] == v1 and "bad release" in hold["reason"] and hold["by"] and hold["since"]
    d.check_quiet()


def test_a_hold_survives_a_webhook_a_watcher_tick_an_alias_move_and_a_retraining_decision(tmp_path):
    d = Driver(tmp_path)
    v1, _ = _two_versions(d)
    _send(d, "undo-1", command="rollback")
    v3 = d.registry.register()
    d.webhook(v3)
    d.run()
    watcher.tick(d.deps)
    d.run()
    _alias_moved(d, "Champion", v3)
    d.run()
    # The monitor's decisions send their deploys as the app's own commands (handlers/monitor.py).
    commands.submit(d.deps, journal.key("decision", "d1.rollback"),
                    {"command": "deploy", "model": MODEL, "environment": "prod", "version": v3}, "d1")
    d.run()
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert _hold(d)["version"] == v1
    refused = journal.get(d.raw_tables, "command", journal.key("decision", "d1.rollback"))
    assert refused["status"] == "rejected" and f"held at version {v1}" in refused["reason"]
    ignored = [r for r in d.records() if r.get("command", {}).get("command") == "reconcile"]
    assert ignored and all(f"version {v1} already serves" in " ".join(r.get("outcome") or []) for r in ignored[-2:])
    entry = overview.environment_status(d.raw_tables, MODEL, "prod", d.deps.policy().model(MODEL).environments["prod"])
    assert entry["hold"]["version"] == v1
    assert any(f"held at version {v1}" in a for a in entry["attention"])

    rec = _send(d, "release-1", command="release", reason="fixed")
    assert rec["status"] == "done" and _hold(d) is None
    assert d.serving_api.serving(ENDPOINT) == [v3]
    d.check_quiet()


def test_hold_pins_a_version_and_release_lets_reconcile_move_it_again(tmp_path):
    d = Driver(tmp_path)
    v1, v2 = _two_versions(d)
    rec = _send(d, "hold-1", command="hold", version=v1, reason="v2 misbehaves at night")
    assert rec["status"] == "done", rec
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert _record(d, "hold-1")["outcome"][0].startswith(f"prod: held at version {v1}")
    assert _send(d, "deploy-2", command="deploy", version=v2)["status"] == "rejected"
    assert d.serving_api.serving(ENDPOINT) == [v1]
    _send(d, "release-1", command="release")
    assert d.serving_api.serving(ENDPOINT) == [v2]
    assert "not held" in _send(d, "release-2", command="release")["outcome"][0]


def test_a_hold_of_a_version_that_does_not_exist_is_refused_and_changes_nothing(tmp_path):
    d = Driver(tmp_path)
    _two_versions(d)
    rec = _send(d, "hold-9", command="hold", version="9", reason="typo")
    assert rec["status"] == "rejected" and "9" in rec["reason"]
    assert _hold(d) is None


def test_rollback_with_no_previous_champion_is_refused(tmp_path):
    d = Driver(tmp_path)
    d.webhook(d.registry.register())
    d.run()
    rec = _send(d, "undo-1", command="rollback")
    assert rec["status"] == "rejected" and "no previous champion" in rec["reason"]
    assert _hold(d) is None


def test_an_operators_deploy_of_an_older_version_holds_unless_told_not_to(tmp_path):
    d = Driver(tmp_path)
    v1, v2 = _two_versions(d)
    assert _send(d, "deploy-1", command="deploy", version=v1, hold=False)["status"] == "done"
    # Unheld, the deploy's alias moves send reconcile back to the latest version.
    d.webhook(v2, at="again")
    d.run()
    assert d.serving_api.serving(ENDPOINT) == [v2] and _hold(d) is None
    assert _send(d, "deploy-2", command="deploy", version=v1)["status"] == "done"
    d.webhook(v2, at="once more")
    d.run()
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert _hold(d)["version"] == v1 and "older than version" in _hold(d)["reason"]


@pytest.mark.parametrize("body", [
    {"command": "hold", "model": MODEL, "environment": "prod", "reason": "no version"},
    {"command": "hold", "model": MODEL, "environment": "prod", "version": "1"},
    {"command": "hold", "model": MODEL, "environment": "prod", "version": "1", "reason": "x", "since": 1},
    {"command": "release", "model": MODEL, "environment": "prod", "version": "1"},
])
def test_a_malformed_hold_or_release_is_rejected_on_sight(body):
    with pytest.raises(CommandRejected):
        parse(json.dumps(body).encode(), "m")


def test_the_cli_builds_hold_release_and_no_hold_deploy_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["hold", MODEL, "prod", "--reason", "x", "--storage", "sqlite:///nowhere.db"])
    assert exc.value.code == 2 and "--version" in capsys.readouterr().err
    built = [command_of(parser().parse_args(argv)) for argv in (
        ["hold", MODEL, "prod", "--version", "1", "--reason", "night"],
        ["release", MODEL, "prod"],
        ["deploy", MODEL, "prod", "--version", "1", "--no-hold"],
    )]
    assert [(c["command"], c.get("version"), c.get("reason"), c.get("hold")) for c in built] == [
        ("hold", "1", "night", None), ("release", None, None, None), ("deploy", "1", None, False)]
    for c in built:
        parse(json.dumps(c).encode(), "m")


def _cli(*argv: str) -> tuple[int, str, str]:
    import io

    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


def test_undo_and_release_through_the_real_stack_and_the_cli(make_app):
    """The on-call story of issue 22: v2 is done, ``reactor rollback`` brings v1 back with the
    aliases and holds it, a new version's webhook leaves it, ``status`` over both backends shows
    the hold, and ``reactor release`` lets reconcile roll the newest version out."""
    from local.stack import HOST_KEY

    app = make_app(strategy={"kind": "direct", "bake": "0s", "abort_delay": "0s"})
    store = ["--storage", app.settings["REACTOR_STORAGE"], "--policy", app.settings["REACTOR_POLICY_FILE"]]
    v1 = app.register()
    v2 = app.register()
    for v in (v1, v2):
        rc, out, err = _cli("deploy", app.model, "prod", "--version", v, "--wait", "--timeout", "120", *store)
        assert rc == 0, out + err
    assert app.serving() == [v2] and app.champion() == v2

    rc, out, err = _cli("rollback", app.model, "prod", "--reason", "bad release", "--wait", "--timeout", "120", *store)
    assert rc == 0, out + err
    assert app.serving() == [v1] and app.champion() == v1
    (undo,) = [r for r in app.rollouts(v1) if r["status"] == "done" and r["created_at"] > app.rollouts(v2)[0][
        "created_at"]]
    assert any(h["step"] == "smoke" for h in undo["history"])
    for backend in (store, ["--url", f"{app.url}/api", "--key", HOST_KEY]):
        rc, out, _ = _cli("status", "--json", *backend)
        (entry,) = json.loads(out)
        assert entry["hold"]["version"] == v1 and entry["hold"]["reason"].endswith("bad release")
        assert any(f"held at version {v1}" in a for a in entry["attention"])

    v3 = app.register()
    assert app.post_webhook(app.webhook_body(v3)).status_code == 202
    (event,) = app.wait(lambda: [e for e in app.records("event") if e["event"]["version"] == v3
                                 and e["status"] == "done"], what=f"the event of version {v3} to be done")
    assert f"version {v3} not rolled out" in event["outcome"] and f"held at version {v1}" in event["outcome"]
    assert app.serving() == [v1]

    rc, out, err = _cli("release", app.model, "prod", "--wait", "--timeout", "120", *store)
    assert rc == 0, out + err
    assert app.serving() == [v3] and app.champion() == v3
    rc, out, _ = _cli("status", "--json", *store)
    assert json.loads(out)[0]["hold"] is None


WINDOW = {"strategy": {"kind": "direct", "bake": "0s", "abort_delay": "0s", "rollback_window": "1h"}}


def _routes(d: Driver) -> dict[str, int]:
    from shared import serving

    cfg = d.serving_api.endpoints[ENDPOINT].config
    return {str(e["entity_version"]): serving.routes(cfg)[e["name"]] for e in cfg["served_entities"]}


def test_inside_the_rollback_window_an_undo_is_a_route_change(tmp_path):
    d = Driver(tmp_path, env=WINDOW)
    v1, v2 = d.registry.register(), d.registry.register()
    for v in (v1, v2):
        assert _send(d, f"deploy-{v}", command="deploy", version=v)["status"] == "done"
    assert _routes(d) == {v1: 0, v2: 100}, "the previous champion stays at 0% for the window"
    assert rollouts.lease(d.raw_tables, ENDPOINT)["kept"]["version"] == v1
    d.command({"command": "reconcile", "model": MODEL})
    d.run()
    assert len(d.rollouts()) == 2, "the kept entity is not a difference reconcile repairs"

    rec = _send(d, "undo-1", command="rollback", reason="bad release")
    assert rec["status"] == "done" and "route change" in rec["outcome"][0], rec
    undo = d.rollouts()[-1]
    assert {h["step"] for h in undo["history"]}.isdisjoint({"deploy", "smoke"}), undo["history"]
    assert _routes(d) == {v1: 100, v2: 0}
    assert d.registry.aliases["Champion"] == v1 and _hold(d)["version"] == v1
    d.check_quiet()


def test_after_the_rollback_window_the_kept_entity_is_retired_and_an_undo_redeploys(tmp_path):
    d = Driver(tmp_path, env=WINDOW)
    v1, v2 = d.registry.register(), d.registry.register()
    for v in (v1, v2):
        _send(d, f"deploy-{v}", command="deploy", version=v)
    served_before = rollouts.served(d.raw_tables, ENDPOINT)
    d.clock.now += 1800
    d.sweep()
    d.run()
    assert _routes(d) == {v1: 0, v2: 100}, "retired before its window ended"
    d.clock.now += 1801
    d.sweep()
    d.run()
    assert _routes(d) == {v2: 100}
    lease = rollouts.lease(d.raw_tables, ENDPOINT)
    assert lease["kept"] is None and lease["previous_champion"] == v1 and lease["serving_version"] == v2
    assert rollouts.served(d.raw_tables, ENDPOINT) == served_before, "retiring is not a new serving period"
    d.sweep()
    assert d.rollouts()[-1]["status"] == "done" and len(d.rollouts()) == 3, "retired once"

    rec = _send(d, "undo-1", command="rollback")
    assert rec["status"] == "done" and "smoke first" in rec["outcome"][0]
    assert any(h["step"] == "smoke" for h in d.rollouts()[-1]["history"])
    assert _routes(d) == {v2: 0, v1: 100}
    assert d.registry.aliases["Champion"] == v1


def test_an_undo_inside_the_rollback_window_is_a_route_change_on_the_real_stack(make_app):
    app = make_app(strategy={"kind": "direct", "bake": "0s", "abort_delay": "0s", "rollback_window": "1h"})
    store = ["--storage", app.settings["REACTOR_STORAGE"], "--policy", app.settings["REACTOR_POLICY_FILE"]]
    v1, v2 = app.register(), app.register()
    for v in (v1, v2):
        rc, out, err = _cli("deploy", app.model, "prod", "--version", v, "--wait", "--timeout", "120", *store)
        assert rc == 0, out + err

    def routes() -> dict[str, int]:
        cfg = app.w.serving_endpoints.get(app.endpoint).config
        names = {e.name: e.entity_version for e in cfg.served_entities}
        return {names[r.served_entity_name or r.served_model_name]: r.traffic_percentage
                for r in cfg.traffic_config.routes}

    assert routes() == {v1: 0, v2: 100}
    rc, out, err = _cli("rollback", app.model, "prod", "--wait", "--timeout", "120", *store)
    assert rc == 0, out + err
    assert routes() == {v1: 100, v2: 0} and app.champion() == v1
    undo = max(app.rollouts(v1), key=lambda r: r["created_at"])
    assert {h["step"] for h in undo["history"]}.isdisjoint({"deploy", "smoke"}), undo["history"]
