import json

import pytest

from shared.events import MalformedEvent, from_databricks, from_mlflow


def test_mlflow_model_version_created():
    ev = from_mlflow(json.dumps({"entity": "model_version", "action": "created", "timestamp": "2026-11-23T00:00:00Z",
                                 "data": {"name": "m", "version": "2", "source": "x", "run_id": "r"}}).encode())
    assert (ev.source, ev.kind, ev.model, ev.version, ev.alias) == ("mlflow", "model_version.created", "m", "2", None)
    assert ev.acted_on


def test_mlflow_alias_created_and_identity():
    raw = {"entity": "model_version_alias", "action": "created", "timestamp": "t1",
           "data": {"name": "m", "alias": "Champion", "version": "3"}}
    a = from_mlflow(json.dumps(raw).encode())
    assert a.kind == "model_version_alias.created" and a.alias == "Champion" and a.acted_on
    assert a.identity == from_mlflow(json.dumps(raw).encode()).identity
    assert a.identity != from_mlflow(json.dumps({**raw, "timestamp": "t2"}).encode()).identity


def test_registered_model_created_is_not_acted_on():
    ev = from_mlflow(b'{"entity":"registered_model","action":"created","timestamp":"t","data":{"name":"m"}}')
    assert not ev.acted_on and ev.version is None


def test_databricks_event():
    ev = from_databricks(json.dumps({"event": "MODEL_VERSION_CREATED", "webhook_id": "w", "event_timestamp": 1,
                                     "model_name": "m", "version": "4", "text": "..."}).encode())
    assert (ev.source, ev.kind, ev.model, ev.version) == ("databricks", "model_version.created", "m", "4")


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"entity":"model_version","action":"created","data":[]}', "data must be an object"),
        (b'{"entity":"model_version","action":"created","data":{"version":"1"}}', "data.name"),
        (b'{"entity":"model_version","action":"created","data":{"name":"m"}}', "data.version"),
        (b'{"entity":"model_version","action":"created","data":{"name":"m","version":{"x":1}}}', "data.version"),
        (b'{"entity":"model_version_alias","action":"created","data":{"name":"m","version":"1"}}', "data.alias"),
        (b'{"action":"created","data":{}}', "entity must be"),
    ],
)
def test_malformed_mlflow_bodies(raw, reason):
    with pytest.raises(MalformedEvent, match=reason):
        from_mlflow(raw)


def test_malformed_databricks_body():
    with pytest.raises(MalformedEvent, match="model_name"):
        from_databricks(b'{"event":"MODEL_VERSION_CREATED","version":"1"}')
