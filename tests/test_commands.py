import json

import pytest

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
        (b"[1,2]", "must be a JSON object"),
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
