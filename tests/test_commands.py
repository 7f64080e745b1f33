import json

import pytest

from shared import commands
from shared.commands import CommandRejected, Deploy, Reconcile, parse


def body(obj):
    return json.dumps(obj).encode()


def test_plain_deploy():
    env = parse(body({"schema_version": 1, "command": "deploy", "model": "m", "environment": "prod",
                      "version": "3"}), "msg-1")
    assert isinstance(env.command, Deploy) and env.command.version == "3"
    assert env.id == "msg-1" and env.source == "queue" and env.correlation_id == "msg-1"


def test_plain_reconcile_keeps_its_correlation_id():
    env = parse(body({"command": "reconcile", "model": "m", "correlation_id": "delivery-9"}), "msg-2")
    assert isinstance(env.command, Reconcile) and env.command.environment is None
    assert env.correlation_id == "delivery-9"


def test_cloudevents_envelope():
    env = parse(body({"specversion": "1.0", "id": "ev-1", "source": "/ci/pipeline",
                      "type": "com.modelops.reactor.deploy.v1", "datacontenttype": "application/json",
                      "data": {"model": "m", "environment": "prod", "alias": "Challenger"}}), "msg-3")
    assert isinstance(env.command, Deploy) and env.command.alias == "Challenger"
    assert env.id == "ev-1" and env.source == "/ci/pipeline"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "not a JSON object"),
        (body({"model": "m"}), "missing 'command'"),
        (body({"command": "nuke", "model": "m"}), "does not match any of the expected tags"),
        (body({"command": "deploy", "model": 7, "environment": "prod"}), "deploy.model: Input should be a valid"),
        (body({"command": "deploy", "model": "m"}), "deploy.environment: Field required"),
        (body({"command": "deploy", "model": "m", "environment": "p", "version": "3", "alias": "a"}),
         "give version or alias, not both"),
        (body({"command": "deploy", "model": "m", "environment": "p", "version": "latest"}), "version"),
        (body({"command": "deploy", "model": "m", "environment": "p", "extra": 1}), "Extra inputs are not permitted"),
        (body({"command": "deploy", "model": "m", "environment": "p", "schema_version": 2}), "schema_version"),
        (body({"specversion": "0.3", "id": "1", "source": "s", "type": "com.modelops.reactor.deploy.v1"}),
         "unsupported CloudEvents specversion"),
        (body({"specversion": "1.0", "source": "s", "type": "com.modelops.reactor.deploy.v1", "data": {}}),
         "attribute 'id' is required"),
        (body({"specversion": "1.0", "id": "1", "source": "s", "type": "org.other.deploy.v1", "data": {}}),
         "is not ours"),
        (body({"specversion": "1.0", "id": "1", "source": "s", "type": "com.modelops.reactor.deploy.v2",
               "data": {}}), "unsupported schema version"),
        (body({"specversion": "1.0", "id": "1", "source": "s", "type": "com.modelops.reactor.deploy.v1",
               "data": "x"}), "'data' must be a JSON object"),
        (b"{" + b" " * 60000 + b"}", "the limit is"),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(CommandRejected, match=reason):
        parse(raw, "m")


def test_a_check_drift_window_is_stored_as_text_and_read_back():
    """The record keeps the command as JSON: a window's datetimes are ISO text, parsed again on redrive."""
    env = commands.parse(b'{"command": "check_drift", "model": "m", "environment": "prod", "window": '
                         b'{"start": "2026-12-02T04:00:00Z", "end": "2026-12-02T05:00:00+00:00"}}', "m-1")
    stored = env.command.model_dump(mode="json", exclude_none=True)
    assert stored["window"] == {"start": "2026-12-02T04:00:00Z", "end": "2026-12-02T05:00:00Z"}
    again = commands.stored(stored)
    assert again.window.start.timestamp() == 1796184000 and again.window.end.timestamp() == 1796187600


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"command": "check_drift", "model": "m", "environment": "p", "window": {"start": "2026-12-02T05:00:00Z", '
     b'"end": "2026-12-02T04:00:00Z"}}', "end must be after start"),
    (b'{"command": "check_drift", "model": "m", "environment": "p", "window": {"start": "2026-12-02T04:00:00", '
     b'"end": "2026-12-02T05:00:00Z"}}', "timezone"),
    (b'{"command": "retrain", "model": "m", "environment": "p"}', "reason"),
])
def test_monitoring_commands_are_validated(body, problem):
    with pytest.raises(commands.CommandRejected, match=problem):
        commands.parse(body, "m-2")


def test_the_digest_an_id_is_bound_to_is_the_validated_commands_not_the_bytes():
    one = parse(b'{"command": "deploy", "model": "m", "environment": "p", "version": "3", "id": "k"}', "a")
    same = parse(b'{"id":"k","schema_version":1,"version":"3","environment":"p","model":"m","command":"deploy"}', "b")
    other = parse(body({"command": "deploy", "model": "m", "environment": "p", "version": "4", "id": "k"}), "c")
    assert commands.digest(one.command) == commands.digest(same.command) != commands.digest(other.command)
    assert one.key == same.key == other.key == "id:k"
