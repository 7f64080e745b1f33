"""Commands from other systems, over the queue and ``POST /api/commands`` (handlers/submit.py):
an idempotency key is bound to its payload, a sender never sets what only the app sets, and a
hostile body is refused with a record, never lost (issue 16, items 4-6).

The real handlers over real SQLite state and queues (tests/engine.py).
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from handlers import commands as command_handler
from handlers import operators, submit
from handlers.http_types import Request
from shared import commands, journal
from shared.commands import CommandRejected
from shared.queues import COMMANDS_QUEUE, POISON_SUFFIX, decode_content
from tests.engine import MODEL, Driver


def deploy(version: str, **extra: Any) -> dict[str, Any]:
    return {"command": "deploy", "model": MODEL, "environment": "prod", "version": version, **extra}


def deliver(d: Driver, payload: dict[str, Any] | bytes, message_id: str | None = None) -> str:
    """One queue message from another system, handled as the trigger would; returns its id."""
    message_id = message_id or str(uuid.uuid4())
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    command_handler.handle_message(d.deps, body, message_id)
    return message_id


def post(d: Driver, payload: dict[str, Any] | bytes):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return submit.handle(d.deps, Request("POST", body, {}))


def commands_queued(d: Driver) -> list[dict[str, Any]]:
    return [json.loads(decode_content(m.content)) for m in d.raw_queues.all_messages(COMMANDS_QUEUE)]


@pytest.fixture
def d(tmp_path: Path) -> Driver:
    driver = Driver(tmp_path)
    driver.registry.register()
    driver.registry.register()
    return driver


# --- item 4: an idempotency key is bound to its payload ----------------------------------------

def test_a_second_payload_under_a_used_id_is_rejected_on_the_queue_and_changes_nothing(d: Driver) -> None:
    deliver(d, deploy("1", id="ci-7"))
    first = journal.get(d.raw_tables, "command", "id:ci-7")
    msg = deliver(d, deploy("2", id="ci-7"))
    assert journal.get(d.raw_tables, "command", "id:ci-7") == first
    refused = journal.get(d.raw_tables, "command", journal.key("msg", msg))
    assert refused is not None and refused["status"] == "rejected"
    assert "id 'ci-7' was already used for a different command" in refused["reason"]
    assert [r["version"] for r in d.rollouts()] == ["1"]


def test_an_abort_under_a_running_deploys_id_does_not_abort_it(d: Driver) -> None:
    deliver(d, deploy("1", id="ci-8"))
    assert journal.get(d.raw_tables, "command", "id:ci-8")["status"] == "running"
    d.clock.now += 3600  # long past any claim
    msg = deliver(d, {"command": "abort", "model": MODEL, "environment": "prod", "id": "ci-8"})
    assert journal.get(d.raw_tables, "command", journal.key("msg", msg))["status"] == "rejected"
    assert journal.get(d.raw_tables, "command", "id:ci-8")["status"] == "running"
    assert [r["status"] for r in d.rollouts()] != ["aborted"]


def test_an_exact_duplicate_of_a_running_command_is_not_acted_on_again(d: Driver) -> None:
    deliver(d, deploy("1", id="ci-9"))
    first = journal.get(d.raw_tables, "command", "id:ci-9")
    d.clock.now += 3600
    deliver(d, deploy("1", id="ci-9"))
    assert journal.get(d.raw_tables, "command", "id:ci-9") == first
    assert len(journal.list_records(d.raw_tables, "command")) == 1


def test_over_http_a_second_payload_is_a_400_and_a_duplicate_answers_the_first_record(d: Driver) -> None:
    first = post(d, deploy("1", id="ci-10"))
    assert first.status == 202 and first.payload["record"] == "id:ci-10"
    d.run()
    rec = journal.get(d.raw_tables, "command", "id:ci-10")
    assert rec["status"] == "done" and rec["command"]["version"] == "1"
    queued = len(commands_queued(d))
    other = post(d, deploy("2", id="ci-10"))
    assert other.status == 400 and "id 'ci-10' was already used for a different command" in other.payload["error"]
    again = post(d, deploy("1", id="ci-10"))
    assert again.status == 202 and again.payload["status"] == "duplicate" and again.payload["first"] == rec
    assert len(commands_queued(d)) == queued
    assert journal.list_records(d.raw_tables, "command") == [rec]


def test_over_http_a_second_payload_is_refused_while_the_first_is_still_queued(d: Driver) -> None:
    assert post(d, deploy("1", id="ci-11")).status == 202
    refused = post(d, deploy("2", id="ci-11"))
    assert refused.status == 400
    d.run()
    assert [r["version"] for r in d.rollouts()] == ["1"]


SENDERS = st.sampled_from(["a", "b"])
PAYLOADS = st.sampled_from(["1", "2"])


class OneKeyOnePayload(RuleBasedStateMachine):
    """Any interleaving of sends (an id, a payload), redeliveries of a message and time passing:
    each id's record keeps the payload first sent under it and was acted on once; every send of
    another payload under it has a rejected record of its own; a duplicate adds nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="reactor-intake-")
        self.d = Driver(Path(self.tmp))
        self.d.registry.register()
        self.d.registry.register()
        self.first: dict[str, str] = {}
        self.sent: list[tuple[str, str, str]] = []  # (message id, sender id, version)

    @rule(sender=SENDERS, version=PAYLOADS)
    def send(self, sender: str, version: str) -> None:
        msg = deliver(self.d, deploy(version, id=sender))
        self.first.setdefault(sender, version)
        self.sent.append((msg, sender, version))

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        if self.sent:
            msg, sender, version = data.draw(st.sampled_from(self.sent))
            deliver(self.d, deploy(version, id=sender), msg)

    @rule()
    def time_passes(self) -> None:
        self.d.clock.now += 120

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @invariant()
    def bound(self) -> None:
        for sender, version in self.first.items():
            rec = journal.get(self.d.raw_tables, "command", f"id:{sender}")
            assert rec["command"]["version"] == version and rec["attempts"] == 1, rec
        for msg, sender, version in self.sent:
            own = journal.get(self.d.raw_tables, "command", journal.key("msg", msg))
            if version == self.first[sender]:
                assert own is None
            else:
                assert own is not None and own["status"] == "rejected", own
        assert sorted(r["version"] for r in self.d.rollouts()) == sorted(set(self.first.values()))


TestOneKeyOnePayload = OneKeyOnePayload.TestCase
TestOneKeyOnePayload.settings = settings(max_examples=25, stateful_step_count=8, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])


# --- item 5: what only the app sets ------------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"event": "event:abc"},
])
def test_an_external_command_naming_an_event_is_refused(d: Driver, extra: dict[str, Any]) -> None:
    payload = {"command": "reconcile", "model": MODEL, **extra}
    with pytest.raises(CommandRejected, match="'event' is set by the app"):
        commands.parse(json.dumps(payload).encode(), "m")
    assert post(d, payload).status == 400


@pytest.mark.parametrize("extra, field", [
    ({"decision": "d-1"}, "decision"),
    ({"window_start": 1e308}, "window_start"),
    ({"version": "3"}, "version"),
])
def test_an_external_retrain_naming_the_apps_fields_is_refused(d: Driver, extra: dict[str, Any], field: str) -> None:
    payload = {"command": "retrain", "model": MODEL, "environment": "prod", "reason": "r", **extra}
    resp = post(d, payload)
    assert resp.status == 400 and f"'{field}' is set by the app" in resp.payload["error"], resp.body
    msg = deliver(d, payload)
    rec = journal.get(d.raw_tables, "command", journal.key("msg", msg))
    assert rec["status"] == "rejected" and f"'{field}' is set by the app" in rec["reason"]


@pytest.mark.parametrize("value", [b"1e400", b"NaN", b"-Infinity"])
def test_a_window_start_out_of_range_is_refused_with_a_record(d: Driver, value: bytes) -> None:
    body = b'{"command": "retrain", "model": "fare", "environment": "prod", "reason": "r", "window_start": %s}' % value
    assert post(d, body).status == 400
    msg = deliver(d, body)
    assert journal.get(d.raw_tables, "command", journal.key("msg", msg))["status"] == "rejected"


def test_a_command_naming_a_real_event_leaves_that_event_open_for_its_own_reconcile(d: Driver) -> None:
    resp = d.webhook("2")
    event_key = resp.payload["record"]
    msg = deliver(d, {"command": "reconcile", "model": MODEL, "id": "x-1", "event": event_key})
    assert journal.get(d.raw_tables, "command", journal.key("msg", msg))["status"] == "rejected"
    assert journal.get(d.raw_tables, "event", event_key)["status"] == "accepted"
    d.run()
    assert journal.get(d.raw_tables, "event", event_key)["status"] == "done"
    assert [r["version"] for r in d.rollouts()] == ["2"]


def test_an_outsider_cannot_take_the_key_of_an_events_reconcile_before_it(d: Driver) -> None:
    """The app's own commands are recorded under keys no sender's id can reach: a reconcile sent
    first under the id the event's reconcile would get neither blocks it nor answers for it."""
    event_key = d.webhook("2").payload["record"]
    squatter = event_key.replace("event:", "event-")
    deliver(d, {"command": "reconcile", "model": MODEL, "id": squatter})
    assert post(d, {"command": "reconcile", "model": MODEL, "id": squatter}).status == 202
    d.run()
    assert journal.get(d.raw_tables, "event", event_key)["status"] == "done"
    rejected = [r for r in journal.list_records(d.raw_tables, "command") if r["status"] == "rejected"]
    assert not rejected, rejected


def test_the_webhooks_reconcile_carries_no_field_an_outsider_could_forge(d: Driver) -> None:
    """The app's own messages name a record it wrote; the command is read from that record."""
    event_key = d.webhook("2").payload["record"]
    (msg,) = commands_queued(d)
    assert msg == {"schema_version": 1, "command": "event", "record": event_key}
    with pytest.raises(CommandRejected, match="the app's own"):
        commands.send(d.deps.queues, json.dumps(msg).encode())


# --- item 6: hostile bodies --------------------------------------------------------------------

NESTED = b'{"command": "deploy", "model": "m", "environment": "p", "x": ' + b"[" * 24000 + b"]" * 24000 + b"}"


def test_a_deeply_nested_command_is_a_400_over_http_with_a_bounded_record(d: Driver) -> None:
    assert len(NESTED) <= commands.MAX_MESSAGE_BYTES
    resp = post(d, NESTED)
    assert resp.status == 400 and "nested deeper than" in resp.payload["error"]
    assert commands_queued(d) == []


def test_a_deeply_nested_command_on_the_queue_is_rejected_and_its_poison_copy_recorded(d: Driver) -> None:
    msg = deliver(d, NESTED)
    rec = journal.get(d.raw_tables, "command", journal.key("msg", msg))
    assert rec["status"] == "rejected" and "nested deeper than" in rec["reason"] and len(rec["excerpt"]) < 2100
    operators.record_poison(d.deps, COMMANDS_QUEUE + POISON_SUFFIX, NESTED, "p-1")
    assert journal.get(d.raw_tables, "poison", journal.key("msg", "p-1"))["status"] == "failed"


def test_an_in_limit_command_with_non_ascii_text_is_sent_as_it_came(d: Driver) -> None:
    """The limit is measured on what is enqueued: the body, base64-encoded as the trigger reads it.
    (A CloudEvent may carry extension attributes of any length; re-encoded as ASCII JSON, each
    "€" grew from 3 bytes to 6 and the message past Azure's 64 KiB.)"""
    def event(subject: str) -> bytes:
        return json.dumps({"specversion": "1.0", "id": "ce-1", "source": "/ci", "subject": subject,
                           "type": "com.modelops.reactor.reconcile.v1", "data": {"model": MODEL}},
                          ensure_ascii=False).encode()

    reason = "€" * ((commands.MAX_MESSAGE_BYTES - 200) // 3)
    body = event(reason)
    assert len(body) <= commands.MAX_MESSAGE_BYTES
    key = commands.send(d.deps.queues, body)
    (message,) = d.raw_queues.all_messages(COMMANDS_QUEUE)
    assert base64.b64decode(message.content) == body and key.startswith("ce~")
    too_big = event(reason + "€" * 100)
    with pytest.raises(CommandRejected, match=f"the limit is {commands.MAX_MESSAGE_BYTES}"):
        commands.send(d.deps.queues, too_big)
    assert post(d, too_big).status == 400
    assert post(d, body).status == 202


def test_the_webhook_still_asks_for_one_reconcile_per_event(d: Driver) -> None:
    first = d.webhook("2", delivery="dl-1")
    again = d.webhook("2", delivery="dl-2")
    assert first.payload["status"] == "accepted" and again.payload["status"] == "duplicate"
    d.run()
    assert journal.get(d.raw_tables, "event", first.payload["record"])["status"] == "done"
    assert [r["version"] for r in d.rollouts()] == ["2"]


def test_a_redrive_of_a_command_whose_rollout_runs_does_not_act_again(d: Driver) -> None:
    """A redrive delivered twice (queues deliver at least once), or one sent by hand, finds the
    command handed to its rollout: its work is the rollout's now."""
    deliver(d, deploy("1", id="ci-12"))
    first = journal.get(d.raw_tables, "command", "id:ci-12")
    assert first["status"] == "running"
    deliver(d, {"command": "redrive", "record": "id:ci-12"})
    deliver(d, {"command": "redrive", "record": "id:ci-12", "token": first["claim_holder"]})
    assert journal.get(d.raw_tables, "command", "id:ci-12") == first
