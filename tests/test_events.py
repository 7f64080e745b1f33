"""Reading registry bodies: the shapes MLflow and Databricks send are accepted; anything else,
however deep, long or oddly encoded, is a MalformedEvent with a reason and never a crash."""

import json
from datetime import UTC, datetime

import pytest

from shared.events import (
    BAD_FIELD,
    MAX_DEPTH,
    NOT_JSON,
    NOT_OBJECT,
    NOT_UNICODE,
    TOO_DEEP,
    MalformedEvent,
    from_databricks,
    from_mlflow,
)


def mlflow_body(data: dict, entity: str = "model_version", action: str = "created", **top) -> bytes:
    return json.dumps({"entity": entity, "action": action, "timestamp": "2026-11-23T00:00:00Z", "data": data,
                       **top}).encode()


def refused(parse, body: bytes) -> MalformedEvent:
    with pytest.raises(MalformedEvent) as info:
        parse(body)
    return info.value


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


def test_every_payload_mlflow_documents_is_read_as_the_server_sends_it():
    # The bodies exactly as mlflow.webhooks.delivery builds them, from MLflow's own examples.
    from mlflow.webhooks.types import EVENT_TO_PAYLOAD_CLASS

    for (entity, action), payload in EVENT_TO_PAYLOAD_CLASS.items():
        body = json.dumps({"entity": entity.value, "action": action.value,
                           "timestamp": datetime.now(UTC).isoformat(), "data": payload.example()})
        ev = from_mlflow(body.encode("utf-8"))
        assert ev.kind == f"{entity.value}.{action.value}"
        assert ev.model == payload.example().get("name", "")


def test_an_alias_deletion_names_no_version():
    ev = from_mlflow(mlflow_body({"name": "m", "alias": "Champion"}, "model_version_alias", "deleted"))
    assert (ev.kind, ev.alias, ev.version, ev.acted_on) == ("model_version_alias.deleted", "Champion", None, True)


def test_databricks_event():
    ev = from_databricks(json.dumps({"event": "MODEL_VERSION_CREATED", "webhook_id": "w", "event_timestamp": 1,
                                     "model_name": "m", "version": "4", "text": "..."}).encode())
    assert (ev.source, ev.kind, ev.model, ev.version) == ("databricks", "model_version.created", "m", "4")


def test_databricks_documented_payloads_are_read():
    # The TRANSITIONED_STAGE and TAG_SET examples of Azure Databricks, "MLflow Model Registry Webhooks on
    # Azure Databricks", https://learn.microsoft.com/en-us/azure/databricks/mlflow/model-registry-webhooks.
    stage = from_databricks(json.dumps({
        "event": "MODEL_VERSION_TRANSITIONED_STAGE", "webhook_id": "c5596721253c4b429368cf6726d3b0b5",
        "event_timestamp": 1589859029343, "model_name": "Airline_Delay_SparkML", "version": "8",
        "to_stage": "Production", "from_stage": "None",
        "text": "Registered model 'someModel' version 8 transitioned from None to Production."}).encode())
    assert (stage.kind, stage.version, stage.occurred_at) == ("model_version.stage_transitioned", "8", "1589859029343")
    tags = from_databricks(json.dumps({
        "event": "MODEL_VERSION_TAG_SET", "webhook_id": "8d7fc634e624474f9bbfde960fdf354c",
        "event_timestamp": 1589859029343, "model_name": "Airline_Delay_SparkML", "version": "8",
        "tags": [{"key": "key1", "value": "value1"}, {"key": "key2", "value": "value2"}],
        "text": "example@example.com set version tag(s) 'key1' => 'value1', 'key2' => 'value2'."}).encode())
    assert tags.kind == "model_version_tag.set"


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


# Defect 7: deep nesting ran the JSON parser out of stack (RecursionError, answered 503).
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("parse", [from_mlflow, from_databricks])
def test_bodies_nested_too_deep_are_refused_before_parsing(parse, depth):
    deep = b"[" * depth + b"]" * depth
    body = b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED","x":' + deep + b"}"
    exc = refused(parse, body)
    assert exc.reason == TOO_DEEP and f"deeper than {MAX_DEPTH} levels" in str(exc)


def test_unbalanced_deep_openers_are_not_json():
    exc = refused(from_mlflow, b"[" * 200_000)
    assert exc.reason == NOT_JSON


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count():
    inner = "[" * (MAX_DEPTH - 3) + "]" * (MAX_DEPTH - 3)  # body → data → x → MAX_DEPTH - 3 arrays
    body = ('{"entity":"model_version","action":"created","data":{"name":"m","version":"1","x":' + inner
            + ',"description":"' + "[{" * 5000 + '\\"]"}}').encode()
    assert from_mlflow(body).version == "1"


# Defect 9: a lone surrogate escape was accepted and could not be stored.
@pytest.mark.parametrize(
    "data",
    [
        {"name": "m", "version": "\\ud800"},
        {"name": "m\\udfff", "version": "1"},
        {"name": "m", "version": "1", "description": "ok \\ud83d then not a pair"},
        {"name": "m", "version": "1", "tags": {"\\udc00": "key is a lone low surrogate"}},
    ],
)
def test_lone_surrogate_escapes_anywhere_are_refused(data):
    body = json.dumps({"entity": "model_version", "action": "created", "data": data}).replace("\\\\u", "\\u")
    exc = refused(from_mlflow, body.encode())
    assert exc.reason == NOT_UNICODE and "lone surrogate" in str(exc)


def test_a_surrogate_pair_escape_is_text():
    body = (b'{"entity":"model_version","action":"created",'
            b'"data":{"name":"m","version":"1","description":"\\ud83d\\ude00"}}')
    assert from_mlflow(body).model == "m"


def test_encoded_surrogates_are_not_utf8():
    body = b'{"entity":"model_version","action":"created","data":{"name":"m\xed\xa0\x80","version":"1"}}'
    assert refused(from_mlflow, body).reason == NOT_JSON


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_number_constants_are_refused(constant):
    body = b'{"entity":"model_version","action":"created","data":{"name":"m","version":"1","x":' + constant + b"}}"
    assert refused(from_mlflow, body).reason == NOT_JSON


def test_a_number_too_long_to_read_is_not_json():
    body = b'{"entity":"model_version","action":"created","data":{"name":"m","version":' + b"9" * 5000 + b"}}"
    assert refused(from_mlflow, body).reason == NOT_JSON


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("name", "a\u0000b", "non-printable"),
        ("name", "line\nbreak", "non-printable"),
        ("name", "evil\u202ename", "non-printable"),
        ("name", "   ", "non-empty string"),
        ("name", 42, "non-empty string"),
        ("name", "x" * 257, "longer than 256"),
        ("name", "team/model", "'/' or ':'"),
        ("name", "models:/m", "'/' or ':'"),
        ("version", "0", "version number"),
        ("version", "01", "version number"),
        ("version", "1.0", "version number"),
        ("version", 1.0, "version number"),
        ("version", True, "version number"),
        ("version", "\u0661", "version number"),  # ARABIC-INDIC DIGIT ONE: int() would take it
        ("version", "1" * 11, "version number"),
        ("version", 10**10, "version number"),
        ("version", " 1", "version number"),
        ("version", "1\n", "version number"),
        ("version", "", "version number"),
    ],
)
def test_model_fields_must_have_the_registry_shape(field, value, message):
    data = {"name": "m", "version": "1", field: value}
    exc = refused(from_mlflow, mlflow_body(data))
    assert exc.reason == BAD_FIELD and f"data.{field}" in str(exc) and message in str(exc)


@pytest.mark.parametrize(
    "alias, message",
    [
        ("", "non-empty string"),
        ("two words", "letters, digits, underscores and dashes"),
        ("Champion\n", "letters, digits, underscores and dashes"),
        ("a.b", "letters, digits, underscores and dashes"),
        ("x" * 256, "longer than 255"),
        ("latest", "reserves"),
        ("LATEST", "reserves"),
        ("v3", "reserves"),
        (7, "non-empty string"),
    ],
)
def test_aliases_follow_mlflow_alias_rules(alias, message):
    exc = refused(from_mlflow, mlflow_body({"name": "m", "version": "1", "alias": alias}, "model_version_alias"))
    assert "data.alias" in str(exc) and message in str(exc)


def test_aliases_mlflow_allows_are_read():
    for alias in ("Champion", "challenger-2", "prod_eu", "Prüfung", "v3a"):
        ev = from_mlflow(mlflow_body({"name": "m", "version": "1", "alias": alias}, "model_version_alias"))
        assert ev.alias == alias


def test_an_integer_version_is_read_as_its_digits():
    assert from_mlflow(mlflow_body({"name": "m", "version": 12})).version == "12"


@pytest.mark.parametrize(
    "top",
    [
        {"timestamp": "t" * 65},
        {"timestamp": "2026-11-23\u0000"},
        {"timestamp": 1.5},
        {"timestamp": {"at": 1}},
        {"entity": "Model_Version"},
        {"entity": "x" * 65},
        {"action": ["created"]},
    ],
)
def test_envelope_fields_must_have_the_registry_shape(top):
    exc = refused(from_mlflow, mlflow_body({"name": "m", "version": "1"}, **top))
    assert exc.reason == BAD_FIELD


@pytest.mark.parametrize(
    "body, field",
    [
        ({"event": "model_version_created", "model_name": "m", "version": "1"}, "event"),
        ({"event": "MODEL_VERSION_CREATED", "model_name": "m", "version": "1", "event_timestamp": 10**16},
         "event_timestamp"),
        ({"event": "MODEL_VERSION_CREATED", "model_name": "m\u0007", "version": "1"}, "model_name"),
        ({"event": "MODEL_VERSION_CREATED", "model_name": "m", "version": "-1"}, "version"),
    ],
)
def test_databricks_fields_must_have_the_registry_shape(body, field):
    exc = refused(from_databricks, json.dumps(body).encode())
    assert str(exc).startswith(field)


@pytest.mark.parametrize("raw", [b"null", b"1", b'"text"', b"[1, 2]", b"true"])
def test_json_that_is_not_an_object_is_refused(raw):
    assert refused(from_mlflow, raw).reason == NOT_OBJECT


def test_reasons_never_quote_the_body():
    secretish = "x" * 300 + "SENTINEL"
    for data in ({"name": secretish, "version": "1"}, {"name": "m", "version": secretish},
                 {"name": "m", "version": "1", "alias": secretish}):
        exc = refused(from_mlflow, mlflow_body(data, "model_version_alias"))
        assert "SENTINEL" not in str(exc) and len(str(exc)) < 200
