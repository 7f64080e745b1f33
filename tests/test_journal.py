"""Records and operators' views over the engine (tests/engine.py): namespaced keys, bounded
rejections, paging, retention, and reconcile reading no rollout history."""

from __future__ import annotations

import json
from pathlib import Path

from handlers import operators
from handlers.http_types import Request
from shared import journal, rejections, rollouts
from tests.engine import ENDPOINT, MODEL, Driver


def test_keys_are_namespaced_and_safe() -> None:
    assert journal.key("mlflow", "3f2a-77") == "mlflow:3f2a-77"
    for hostile in ("a/b", "a#b", "a?b", "a\\b", "a\x07b", "x" * 201, "event:abc"):
        k = journal.key("mlflow", hostile)
        assert k.startswith("mlflow~") and not set("/\\#?") & set(k), k
    assert journal.key("mlflow", "event-abc") != journal.key("event", "abc")


def test_a_crafted_delivery_id_cannot_shadow_a_later_event(tmp_path: Path) -> None:
    """Before, record ids shared one namespace with delivery ids, so a sender could pick the id
    a later valid event would get and make it answer 'duplicate'."""
    d = Driver(tmp_path)
    v1 = d.registry.register()
    from shared.events import RegistryEvent

    identity = RegistryEvent("mlflow", "model_version.created", MODEL, v1, None, f"t{v1}").identity
    for crafted in (f"event:{identity}", f"event-{identity}", f"rejected-{identity}", f"dbx-{identity}"):
        assert d.webhook(v1, crafted, at="another-moment").status == 202
    assert d.webhook(v1, "the-real-delivery").payload["status"] == "accepted"
    d.run()
    assert d.serving_api.serving(ENDPOINT) == [v1]
    assert {r["status"] for r in d.records() if r["kind"] == "event"} <= journal.TERMINAL


def test_anonymous_rejections_cost_bounded_storage(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    for n in range(400):
        resp = operators_webhook(d, {"x-mlflow-signature": "v1,AAAA", "x-mlflow-delivery-id": f"d{n}",
                                     "x-mlflow-timestamp": "1"})
        assert resp.status == 401 and resp.payload == {"error": "signature verification failed"}
    summary = rejections.summary(d.raw_tables)
    assert summary["401"]["counts"]["total"] == 400
    assert len(summary["401"]["samples"]) == rejections.SAMPLES
    assert len(d.raw_tables.query(rejections.TABLE)) == rejections.SAMPLES + 1
    assert journal.list_records(d.raw_tables) == []


def operators_webhook(d: Driver, headers: dict[str, str]):
    from handlers import webhook

    return webhook.handle(d.deps, Request("POST", b'{"entity": "model_version"}', headers))


def test_views_page_with_continuation_tokens(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    for _ in range(5):
        d.command({"command": "reconcile", "model": "not-in-policy"})
    d.run()
    seen, token = [], None
    while True:
        params = {"limit": "2", "kind": "command", **({"continuation": token} if token else {})}
        resp = operators.list_records(d.deps, Request("GET", b"", params=params))
        assert resp.status == 200 and len(resp.payload["records"]) <= 2
        seen += [r["key"] for r in resp.payload["records"]]
        token = resp.payload["continuation"]
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"continuation": "garbage"}):
        assert operators.list_records(d.deps, Request("GET", b"", params=bad)).status == 400
        assert operators.list_rollouts(d.deps, Request("GET", b"", params=bad)).status == 400
    rollouts_page = operators.list_rollouts(d.deps, Request("GET", b"", params={}))
    assert rollouts_page.status == 200 and rollouts_page.payload["continuation"] is None
    json.dumps(rollouts_page.payload)  # the answer is JSON as it stands


def test_retention_deletes_only_what_is_finished_and_old(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    d.registry.register()
    d.command({"command": "reconcile", "model": MODEL})
    d.run()
    assert len(d.records()) == 1 and len(d.rollouts()) == 1
    d.clock.now += 31 * 86400
    assert d.sweep()["deleted"] == 1  # the record; the rollout is kept for 90 days
    assert d.records() == [] and len(d.rollouts()) == 1
    assert d.sweep()["deleted"] == 0  # retention runs at most hourly
    d.clock.now += 60 * 86400
    assert d.sweep()["deleted"] == 1
    assert d.rollouts() == [] and rollouts.lease(d.raw_tables, ENDPOINT).get("serving_version") == "1"


def test_reconcile_reads_no_rollout_history(tmp_path: Path) -> None:
    d = Driver(tmp_path)
    for _ in range(3):
        d.registry.register()
        d.command({"command": "reconcile", "model": MODEL})
        d.run()
    reads: list[str] = []
    real = d.deps.tables.query_page

    def counted(table, partition_key=None, **kw):
        reads.append(table)
        return real(table, partition_key, **kw)

    d.deps.tables.query_page = counted
    d.command({"command": "reconcile", "model": MODEL})
    while d.step():
        pass
    assert rollouts.ROLLOUTS not in reads, reads
    assert d.records()[-1]["outcome"] == ["prod: version 3 already serves"]
