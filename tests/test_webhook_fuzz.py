"""The webhook under seeded random traffic: valid MLflow and Databricks deliveries mixed with
everything a careless or hostile sender can do. The rule (docs/architecture.md "Registry webhook"): bad
signature 401, malformed 400, too large 413, never a 5xx; each distinct event enqueues one
``reconcile``; and what anonymous requests cost in storage is bounded.

The same generator drives ``handlers.webhook.handle`` in-process (a real ``Deps`` over SQLite)
and, in a smaller burst, the real Functions trigger through the local host.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import sqlite3
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from handlers.deps import Deps
from handlers.http_types import Request
from handlers.webhook import handle
from local.stack import app_settings, function_host
from shared import journal
from shared.events import MalformedEvent, RegistryEvent, from_databricks, from_mlflow
from shared.queues import COMMANDS_QUEUE
from shared.settings import Settings
from shared.signatures import databricks_signature, mlflow_signature
from shared.storage import open_queues, open_tables
from tests.conftest import NEVER, policy_yaml

SEED = 20261123
IN_PROCESS_REQUESTS = 3000
HTTP_REQUESTS = 300
MLFLOW_SECRET = "fuzz-mlflow-secret"
DATABRICKS_SECRET = "fuzz-databricks-secret"
MAX_BODY = 64 * 1024  # small, so oversized bodies are cheap to send
TOLERANCE = 300
NOW = 1_795_000_000.0  # the in-process clock is frozen (a float, as time.time): every run is the same
MODEL = "fuzz_model"
# What storage may hold after the fuzz: a row per valid delivery (its record), a row per
# distinct event (its identity claim), two rows per signed but malformed delivery (its
# rejection record and the rejected index's entry, shared.journal J6); everything anonymous
# shares a fixed budget (counters and recent samples per status, not a row per request).
FIXED_ROWS = 300


@dataclass
class Case:
    """One request and what it must get."""

    label: str
    headers: list[tuple[str, str]]
    body: bytes
    expect: frozenset[int]
    signed_id: str | None = None  # the delivery id a secret holder vouched for
    event: RegistryEvent | None = None  # the event of a valid delivery


@dataclass
class Fuzzer:
    """Seeded request generator. ``over_http`` keeps header values sendable on the wire
    (Latin-1, no CR/LF); in-process they may hold any code point, lone surrogates included."""

    rng: random.Random
    now: Callable[[], float]
    over_http: bool = False
    models: tuple[str, ...] = (MODEL, MODEL, MODEL, "someone_elses_model")
    sent: list[Case] = field(default_factory=list)

    # Valid deliveries

    def _iso(self) -> str:
        # Few distinct instants, so the same event sometimes comes back through another delivery.
        return f"2026-11-23T00:{self.rng.randint(0, 9):02d}:00.000000+00:00"

    def mlflow_body(self) -> bytes:
        r = self.rng
        kind = r.choice(["model_version.created", "model_version_alias.created", "model_version_alias.deleted",
                         "model_version_tag.set", "registered_model.created"])
        entity, action = kind.rsplit(".", 1)
        data: dict[str, Any] = {"name": r.choice(self.models)}
        if kind.startswith("model_version") and kind != "model_version_alias.deleted":
            data["version"] = str(r.randint(1, 12))
        if entity == "model_version_alias":
            data["alias"] = r.choice(["Champion", "Challenger", "prod-eu"])
        if kind == "model_version.created":
            data.update(source=f"mlflow-artifacts:/1/{uuid.UUID(int=r.getrandbits(128)).hex}", run_id="r1",
                        tags={"team": "fuzz"}, description=r.choice([None, "retrained", "caf\u00e9 \U0001f600"]))
        if kind == "model_version_tag.set":
            data.update(key="validated", value="true")
        return json.dumps({"entity": entity, "action": action, "timestamp": self._iso(), "data": data}).encode()

    def databricks_body(self) -> bytes:
        r = self.rng
        event = r.choice(["MODEL_VERSION_CREATED", "MODEL_VERSION_TRANSITIONED_STAGE", "MODEL_VERSION_TAG_SET",
                          "REGISTERED_MODEL_CREATED"])
        body: dict[str, Any] = {"event": event, "webhook_id": uuid.UUID(int=r.getrandbits(128)).hex,
                                "event_timestamp": 1_589_859_029_000 + r.randint(0, 9),
                                "model_name": r.choice(self.models), "text": "registry event"}
        if event != "REGISTERED_MODEL_CREATED":
            body["version"] = str(r.randint(1, 12))
        if event == "MODEL_VERSION_TRANSITIONED_STAGE":
            body.update(to_stage="Production", from_stage="None")
        if event == "MODEL_VERSION_TAG_SET":
            body["tags"] = [{"key": "k", "value": "v"}]
        return json.dumps(body).encode()

    def mlflow_headers(self, body: bytes, *, delivery: str | None = None, ts: str | None = None,
                       secret: str = MLFLOW_SECRET) -> list[tuple[str, str]]:
        delivery = delivery or str(uuid.UUID(int=self.rng.getrandbits(128)))
        ts = ts or str(int(self.now()) + self.rng.randint(-TOLERANCE + 30, TOLERANCE - 30))
        return [("Content-Type", "application/json"), ("X-MLflow-Delivery-Id", delivery),
                ("X-MLflow-Timestamp", ts), ("X-MLflow-Signature", mlflow_signature(secret, delivery, ts, body))]

    def _valid(self, label: str, body: bytes, headers: list[tuple[str, str]], source: str,
               signed_id: str) -> Case:
        try:
            event: RegistryEvent | None = (from_mlflow if source == "mlflow" else from_databricks)(body)
        except MalformedEvent:  # the parser refusing a registry's own shape: the answer check reports it
            event = None
        return Case(label, headers, body, frozenset({202}), signed_id, event)

    def valid_mlflow(self) -> Case:
        body = self.mlflow_body()
        headers = self.mlflow_headers(body)
        return self._valid("valid mlflow", body, headers, "mlflow", headers[1][1])

    def valid_databricks(self) -> Case:
        body = self.databricks_body()
        return self._valid("valid databricks", body,
                           [("X-Databricks-Signature", databricks_signature(DATABRICKS_SECRET, body))],
                           "databricks", "dbx:" + body.hex())

    def redelivery(self) -> Case:
        """The same delivery again (MLflow retries keep the delivery id), or the same event
        through a second webhook (a new delivery id)."""
        prior = [c for c in self.sent if c.event is not None]
        if not prior:
            return self.valid_mlflow()
        old = self.rng.choice(prior)
        if old.event is not None and old.event.source == "mlflow" and self.rng.random() < 0.5:
            headers = self.mlflow_headers(old.body)
            return self._valid("same event, second webhook", old.body, headers, "mlflow", headers[1][1])
        return Case("redelivery", list(old.headers), old.body, frozenset({202}), old.signed_id, old.event)

    def repeated_signature_header(self) -> Case:
        """A header sent twice: the host joins the values with ", "; either order must verify."""
        if self.rng.random() < 0.5:
            body = self.mlflow_body()
            headers = self.mlflow_headers(body)
            good = headers.pop()
            other = ("X-MLflow-Signature", mlflow_signature("rotated-out", headers[1][1], headers[2][1], body))
            pair = [good, other] if self.rng.random() < 0.5 else [other, good]
            return self._valid("repeated mlflow signature", body, headers + pair, "mlflow", headers[1][1])
        body = self.databricks_body()
        sigs = [("X-Databricks-Signature", databricks_signature(DATABRICKS_SECRET, body)),
                ("X-Databricks-Signature", databricks_signature("rotated-out", body))]
        self.rng.shuffle(sigs)
        return self._valid("repeated databricks signature", body, sigs, "databricks", "dbx:" + body.hex())

    def both_schemes(self) -> Case:
        """A Databricks delivery that also carries MLflow headers, or two signatures of which one verifies."""
        r = self.rng
        if r.random() < 0.5:
            body = self.databricks_body()
            extra = [("X-MLflow-Delivery-Id", str(uuid.uuid4())), ("X-MLflow-Timestamp", str(int(self.now())))]
            headers = [("X-Databricks-Signature", databricks_signature(DATABRICKS_SECRET, body)), *extra]
            return self._valid("databricks with mlflow headers", body, headers, "databricks", "dbx:" + body.hex())
        # The signature that verifies decides how the body is read, so the body matches it.
        good_mlflow = r.random() < 0.5
        body = self.mlflow_body() if good_mlflow else self.databricks_body()
        headers = self.mlflow_headers(body, secret=MLFLOW_SECRET if good_mlflow else "wrong")
        dbx = databricks_signature(DATABRICKS_SECRET if not good_mlflow or r.random() < 0.5 else "wrong", body)
        headers.append(("X-Databricks-Signature", dbx))
        return self._valid("both signatures", body, headers, "mlflow" if good_mlflow else "databricks",
                           headers[1][1] if good_mlflow else "dbx:" + body.hex())

    # Refused before any proof of origin: 401

    def _garbage_text(self, n: int) -> str:
        if self.over_http:
            alphabet = [chr(c) for c in range(0x20, 0x100) if c != 0x7F] + ["\t"]
        else:
            alphabet = [*string.printable, "\ud800", "\udfff", "\u0000", "\u202e", "\uffff", "\U0010ffff"]
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def bad_signature(self) -> Case:
        r = self.rng
        body = self.mlflow_body()
        how = r.choice(["wrong secret", "tampered body", "random base64", "truncated", "databricks wrong",
                        "databricks as base64", "mlflow as hex"])
        if how == "wrong secret":
            headers = self.mlflow_headers(body, secret="not-the-secret")
        elif how == "tampered body":
            headers = self.mlflow_headers(body)
            body = body.replace(b'"name"', b'"name" ', 1)
        elif how == "random base64":
            headers = [*self.mlflow_headers(body)[:-1],
                       ("X-MLflow-Signature", "v1," + base64.b64encode(r.randbytes(32)).decode())]
        elif how == "truncated":
            headers = self.mlflow_headers(body)
            headers[-1] = (headers[-1][0], headers[-1][1][: r.randint(0, 20)])
        elif how == "databricks wrong":
            headers = [("X-Databricks-Signature", r.randbytes(32).hex())]
        elif how == "databricks as base64":
            headers = [("X-Databricks-Signature", base64.b64encode(
                bytes.fromhex(databricks_signature(DATABRICKS_SECRET, body))).decode())]
        else:
            headers = [*self.mlflow_headers(body)[:-1], ("X-MLflow-Signature", r.randbytes(32).hex())]
        return Case(f"bad signature: {how}", headers, body, frozenset({401}))

    def bad_headers(self) -> Case:
        r = self.rng
        body = self.mlflow_body()
        headers = self.mlflow_headers(body)
        how = r.choice(["missing delivery id", "missing timestamp", "missing signature", "no headers",
                        "garbled delivery id", "garbled timestamp", "garbled signature", "huge signature",
                        "huge delivery id", "long timestamp", "non-ascii digits", "stale", "future",
                        "negative", "fractional", "garbled databricks"])
        names = {"delivery id": "X-MLflow-Delivery-Id", "timestamp": "X-MLflow-Timestamp",
                 "signature": "X-MLflow-Signature"}
        if how.startswith("missing"):
            drop = names[how.removeprefix("missing ")]
            headers = [h for h in headers if h[0] != drop]
        elif how == "no headers":
            headers = []
        elif how.startswith("garbled") and how != "garbled databricks":
            name = names[how.removeprefix("garbled ")]
            headers = [(k, self._garbage_text(r.randint(0, 80)) if k == name else v) for k, v in headers]
        elif how == "huge signature":
            # Over HTTP, stay under the 64 KiB header line that http.server reads.
            copies = r.randint(200, 1000 if self.over_http else 3000)
            headers[-1] = (headers[-1][0], " ".join([headers[-1][1]] * copies))
        elif how == "huge delivery id":
            delivery = "d" * r.randint(129, 12_000)
            headers = self.mlflow_headers(body, delivery=delivery)
        elif how in ("long timestamp", "non-ascii digits", "stale", "future", "negative", "fractional"):
            ts = {
                "long timestamp": "9" * r.randint(13, 5000),
                "non-ascii digits": "\u0661" * 10 if not self.over_http else "\u00b9" * 10,
                "stale": str(int(self.now()) - r.randint(TOLERANCE + 5, 10**6)),
                "future": str(int(self.now()) + r.randint(TOLERANCE + 5, 10**6)),
                "negative": "-" + str(int(self.now())),
                "fractional": f"{self.now():.3f}",
            }[how]
            # Signed with the secret: the timestamp must be refused on its own merits.
            headers = self.mlflow_headers(body, ts=ts)
        else:
            headers = [("X-Databricks-Signature", self._garbage_text(r.randint(0, 200)))]
        return Case(f"bad headers: {how}", headers, body, frozenset({401}))

    # Signed, but not a registry event: 400

    def _malformed_body(self) -> tuple[str, bytes]:
        r = self.rng
        how = r.choice(["deep arrays", "deep objects", "deep in data", "lone surrogate", "invalid utf-8",
                        "not an object", "wrong types", "enormous field", "garbage", "nan", "control chars",
                        "bad version", "bad alias", "unbalanced"])
        depth = r.randint(17, 5000)
        if how == "deep arrays":
            return how, b"[" * depth + b"]" * depth
        if how == "deep objects":
            return how, b'{"a":' * depth + b"1" + b"}" * depth
        if how == "deep in data":
            return how, (b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED",'
                         b'"model_name":"m","version":"1","data":{"name":"m","version":"1","x":'
                         + b"[" * depth + b"]" * depth + b"}}")
        if how == "unbalanced":
            return how, b"[" * depth
        if how == "lone surrogate":
            field_, value = r.choice([("version", "\\ud800"), ("name", "m\\udc00"), ("description", "\\udbff!")])
            return how, (b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED",'
                         b'"model_name":"m","version":"1","data":{"name":"m","version":"1","' + field_.encode()
                         + b'":"' + value.encode() + b'"},"' + field_.encode() + b'":"' + value.encode() + b'"}')
        if how == "invalid utf-8":
            good = self.mlflow_body()
            cut = r.randint(0, len(good))
            return how, good[:cut] + r.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]) + good[cut:]
        if how == "not an object":
            return how, r.choice([b"[]", b"null", b"42", b'"model_version"', b"true", b'[{"entity":"x"}]'])
        if how == "wrong types":
            return how, json.dumps(r.choice([
                {"entity": "model_version", "action": "created", "data": "name=m"},
                {"entity": "model_version", "action": "created", "data": {"name": 7, "version": "1"}},
                {"entity": "model_version", "action": "created", "data": {"name": "m", "version": [1]}},
                {"entity": 1, "action": "created", "data": {}},
                {"event": ["MODEL_VERSION_CREATED"], "model_name": "m"},
                {"event": "MODEL_VERSION_CREATED", "model_name": {"n": 1}, "version": "1"},
                {"entity": "model_version", "action": "created", "data": {"name": "m", "version": True}},
            ])).encode()
        if how == "enormous field":
            big = "x" * r.randint(300, MAX_BODY // 4)
            return how, json.dumps({"entity": "model_version", "action": "created", "event": "MODEL_VERSION_CREATED",
                                    "model_name": big, "version": "1", "data": {"name": big, "version": "1"}}).encode()
        if how == "garbage":
            return how, r.randbytes(r.randint(0, 2000))
        if how == "nan":
            return how, (b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED",'
                         b'"model_name":"m","version":NaN,"data":{"name":"m","version":NaN}}')
        if how == "control chars":
            name = r.choice(["m\\u0000", "a\\nb", "m\\u202e", "\\t"])
            return how, (b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED",'
                         b'"model_name":"' + name.encode() + b'","version":"1","data":{"name":"' + name.encode()
                         + b'","version":"1"}}')
        if how == "bad version":
            v = r.choice(['"01"', '"1.0"', "1.5", '"9999999999999"', '"-2"', '"v1"', '""', '"\\u0661"'])
            return how, (b'{"entity":"model_version","action":"created","event":"MODEL_VERSION_CREATED",'
                         b'"model_name":"m","version":' + v.encode() + b',"data":{"name":"m","version":'
                         + v.encode() + b"}}")
        a = r.choice(['"latest"', '"v2"', '"two words"', '"' + "a" * 300 + '"', '""', "3"])
        return how, (b'{"entity":"model_version_alias","action":"created","event":"MODEL_VERSION_CREATED",'
                     b'"model_name":"m","data":{"name":"m","version":"1","alias":' + a.encode() + b"}}")

    def signed_malformed(self) -> Case:
        how, body = self._malformed_body()
        if self.rng.random() < 0.5:
            headers = self.mlflow_headers(body)
            return Case(f"signed malformed (mlflow): {how}", headers, body, frozenset({400}), headers[1][1])
        return Case(f"signed malformed (databricks): {how}", [
            ("X-Databricks-Signature", databricks_signature(DATABRICKS_SECRET, body))], body, frozenset({400}),
            "dbx:" + body.hex())

    # Too large to look at: 413

    def oversized(self) -> Case:
        body = b'{"pad":"' + b"x" * self.rng.randint(MAX_BODY, 2 * MAX_BODY) + b'"}'
        headers = self.mlflow_headers(body) if self.rng.random() < 0.5 else []
        return Case("oversized", headers, body, frozenset({413}))

    def unsigned_garbage(self) -> Case:
        how, body = self._malformed_body()
        return Case(f"unsigned: {how}", [], body, frozenset({401}))

    def next(self) -> Case:
        makers: list[tuple[Callable[[], Case], int]] = [
            (self.valid_mlflow, 18), (self.valid_databricks, 8), (self.redelivery, 8),
            (self.repeated_signature_header, 4), (self.both_schemes, 4), (self.bad_signature, 12),
            (self.bad_headers, 16), (self.signed_malformed, 20), (self.oversized, 3), (self.unsigned_garbage, 7),
        ]
        make = self.rng.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
        case = make()
        self.sent.append(case)
        return case


def as_host_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Headers as the trigger adapter hands them on: lower-case names, a repeated header's
    values joined with ", " (local/host.py, like any HTTP stack)."""
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def table_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("SELECT COUNT(*) FROM table_entities").fetchone()
    return int(n)


def check_answers(answers: list[tuple[Case, int | str]]) -> None:
    wrong = [(c.label, got, sorted(c.expect)) for c, got in answers if got not in c.expect]
    server_errors = [w for w in wrong if not isinstance(w[1], int) or w[1] >= 500]
    assert not server_errors, f"{len(server_errors)} server errors, e.g. {server_errors[:10]}"
    assert not wrong, f"{len(wrong)} unexpected answers, e.g. {wrong[:10]}"
    assert {got for _, got in answers} == {202, 400, 401, 413}  # every outcome was exercised


def write_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.json"
    policy.write_text(policy_yaml(MODEL, "fuzz-endpoint"))
    return policy


def storage_bound(cases: list[Case]) -> int:
    valid = {c.signed_id for c in cases if c.signed_id is not None and c.event is not None}
    events = {c.event.identity for c in cases if c.event is not None}
    malformed = {c.signed_id for c in cases if c.signed_id is not None and c.event is None}
    return len(valid) + len(events) + 2 * len(malformed) + FIXED_ROWS


def _no_platform_call() -> Any:
    raise AssertionError("the webhook path never calls Databricks or the registry")


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    """The webhook's real dependencies over a SQLite store in ``tmp_path``, clock frozen at NOW."""
    settings = Settings.from_env({
        "REACTOR_STORAGE": f"sqlite:///{tmp_path / 'reactor.db'}", "REACTOR_POLICY_FILE": str(write_policy(tmp_path)),
        "MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET, "DATABRICKS_WEBHOOK_SECRET": DATABRICKS_SECRET,
        "WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY), "WEBHOOK_TOLERANCE_SECONDS": str(TOLERANCE),
    })
    return Deps(settings=settings, tables=open_tables(settings.storage), queues=open_queues(settings.storage),
                workspace=_no_platform_call, registry=_no_platform_call, clock=lambda: NOW)


def test_in_process_fuzz_never_answers_5xx_and_storage_stays_bounded(deps, tmp_path):
    fuzz = Fuzzer(random.Random(SEED), now=lambda: NOW)
    answers: list[tuple[Case, int | str]] = []
    for _ in range(IN_PROCESS_REQUESTS):
        case = fuzz.next()
        try:
            got: int | str = handle(deps, Request("POST", case.body, as_host_headers(case.headers))).status
        except Exception as exc:  # what the trigger would answer 503
            got = f"raised {type(exc).__name__}"
        answers.append((case, got))

    labels = {c.label.split(":")[0] for c, _ in answers}
    assert {"valid mlflow", "valid databricks", "redelivery", "signed malformed (mlflow)", "bad headers",
            "bad signature", "oversized"} <= labels
    check_answers(answers)
    # Principle 1: duplicates are harmless. Each distinct event that can change what serves
    # enqueues exactly one reconcile, however often and through however many webhooks it came.
    acted = {c.event.identity for c in fuzz.sent if c.event and c.event.acted_on and c.event.model == MODEL}
    assert deps.queues.count(COMMANDS_QUEUE) == len(acted)
    # Anonymous requests must not cost a row each (depends on bounded rejection records).
    rows, bound = table_rows(tmp_path / "reactor.db"), storage_bound(fuzz.sent)
    assert rows <= bound, f"{rows} stored entities after {IN_PROCESS_REQUESTS} requests; the bound is {bound}"


def _post(conn: http.client.HTTPConnection, case: Case) -> int:
    conn.putrequest("POST", "/api/registry/webhook", skip_accept_encoding=True)
    for name, value in case.headers:
        conn.putheader(name, value.encode("latin-1"))
    conn.putheader("Content-Length", str(len(case.body)))
    conn.endheaders(case.body)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def test_http_fuzz_through_the_trigger_never_answers_5xx(tmp_path):
    policy = write_policy(tmp_path)
    settings = app_settings(data_dir=tmp_path, policy=policy, mlflow_url="http://127.0.0.1:9",
                            workspace_url="http://127.0.0.1:9", watch_schedule=NEVER)
    settings.update({"MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET, "DATABRICKS_WEBHOOK_SECRET": DATABRICKS_SECRET,
                     "WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY), "REACTOR_REPAIR_SCHEDULE": NEVER})
    # Only models outside the policy: accepted events are recorded as ignored, so no reconcile
    # tries to reach a registry that is not running.
    fuzz = Fuzzer(random.Random(SEED + 1), now=time.time, over_http=True, models=("not_in_policy",))
    answers: list[tuple[Case, int | str]] = []
    with function_host(settings) as host:
        split = urlsplit(host.url)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        try:
            for _ in range(HTTP_REQUESTS):
                case = fuzz.next()
                try:
                    got: int | str = _post(conn, case)
                except (http.client.HTTPException, OSError) as exc:
                    got = f"connection failed: {type(exc).__name__}"
                    conn.close()
                answers.append((case, got))
        finally:
            conn.close()
    check_answers(answers)
    rows, bound = table_rows(tmp_path / "reactor.db"), storage_bound(fuzz.sent)
    assert rows <= bound, f"{rows} stored entities after {HTTP_REQUESTS} requests; the bound is {bound}"


@pytest.mark.parametrize(
    "label, body, headers, status",
    [
        # Defect 7: nested arrays 1,000 deep, validly signed, raised RecursionError (503).
        ("deep nesting", b'{"entity":"model_version","action":"created","data":' + b"[" * 1000 + b"]" * 1000 + b"}",
         None, 400),
        # Defect 9: a lone surrogate escape, validly signed, could not be stored (503, record stuck).
        ("lone surrogate", b'{"entity":"model_version","action":"created","data":{"name":"fuzz_model",'
                           b'"version":"\\ud800"}}', None, 400),
        # Defect 8: a timestamp of hundreds of digits overflowed before the signature check (503).
        ("long timestamp", b"{}", {"x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": "9" * 400,
                                   "x-mlflow-signature": "v1,AAAA"}, 401),
    ],
)
def test_each_reported_defect_is_a_4xx_with_a_reason(deps, label, body, headers, status):
    fuzz = Fuzzer(random.Random(SEED), now=lambda: NOW)
    h = headers if headers is not None else as_host_headers(fuzz.mlflow_headers(body))
    resp = handle(deps, Request("POST", body, h))
    assert resp.status == status, resp.payload
    assert resp.payload["error"]
    assert deps.queues.count(COMMANDS_QUEUE) == 0
    assert journal.list_records(deps.tables, "event", "accepted") == []  # nothing left half-done


def test_a_databricks_delivery_with_mlflow_headers_and_repeated_signatures_are_accepted(deps):
    # Defect 11: any X-MLflow-* header chose MLflow verification (401), and a repeated
    # signature header verified or not depending on its order.
    fuzz = Fuzzer(random.Random(SEED), now=lambda: NOW)
    dbx_body = fuzz.databricks_body()
    dbx = {"x-databricks-signature": databricks_signature(DATABRICKS_SECRET, dbx_body),
           "x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": str(int(NOW))}
    assert handle(deps, Request("POST", dbx_body, dbx)).status == 202
    for first_is_good in (True, False):
        body = fuzz.mlflow_body()
        h = as_host_headers(fuzz.mlflow_headers(body))
        old = mlflow_signature("rotated-out", h["x-mlflow-delivery-id"], h["x-mlflow-timestamp"], body)
        pair = [h["x-mlflow-signature"], old]
        h["x-mlflow-signature"] = ", ".join(pair if first_is_good else pair[::-1])
        assert handle(deps, Request("POST", body, h)).status == 202
    # The refusal says nothing about the server's clock or its secrets.
    stale = as_host_headers(fuzz.mlflow_headers(b"{}", ts=str(int(NOW) - 10_000)))
    resp = handle(deps, Request("POST", b"{}", stale))
    assert resp.status == 401 and str(int(NOW)) not in json.dumps(resp.payload)
    assert "SECRET" not in json.dumps(handle(deps, Request("POST", b"{}", {"x-mlflow-signature": "v1,AAAA"})).payload)


def test_an_ignored_event_is_one_record_and_its_redelivery_a_duplicate(deps, tmp_path):
    """An event for a model the policy does not serve is recorded ``ignored`` in one write and
    enqueues nothing; delivered again (a new delivery id), it is a duplicate of that record; an
    accepted event's record and its reconcile are written together."""
    fuzz = Fuzzer(random.Random(SEED), now=lambda: NOW)

    def deliver(model: str, version: str) -> dict[str, Any]:
        body = json.dumps({"entity": "model_version", "action": "created", "timestamp": "2026-12-02T00:00:00Z",
                           "data": {"name": model, "version": version}}).encode()
        answer = handle(deps, Request("POST", body, as_host_headers(fuzz.mlflow_headers(body))))
        assert answer.status == 202
        return answer.payload

    first = deliver("not_in_policy", "1")
    assert first["status"] == "ignored" and "not in the policy" in first["reason"]
    assert deliver("not_in_policy", "1") == {"status": "duplicate", "record": first["record"]}
    assert [r["status"] for r in journal.list_records(deps.tables, "event")] == ["ignored"]
    assert deps.queues.count(COMMANDS_QUEUE) == 0
    accepted = deliver(MODEL, "1")
    assert accepted["status"] == "accepted" and deps.queues.count(COMMANDS_QUEUE) == 1
    assert deliver(MODEL, "1")["status"] == "duplicate" and deps.queues.count(COMMANDS_QUEUE) == 1


def test_an_unresolved_key_vault_reference_refuses_every_delivery_and_says_so(tmp_path, caplog):
    """App Service passes a Key Vault reference it could not resolve through as the setting's
    value (Microsoft Learn, "Use Key Vault references as app settings",
    https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references). Through
    the real app over HTTP: a delivery signed with that text is refused, the start warns, and
    ``GET /api/status`` names the setting; the reference text appears in no answer and no log.
    The same for a malformed identity setting (shared.app_state): an unresolved reference as
    ``DATABRICKS_TOKEN`` beside ``AZURE_CLIENT_ID``, a client id that is not a GUID."""
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-reactor.vault.azure.net/secrets/mlflow-webhook-secret/)"
    token_ref = "@Microsoft.KeyVault(SecretUri=https://kv-reactor.vault.azure.net/secrets/databricks-token/)"
    settings = app_settings(data_dir=tmp_path, policy=write_policy(tmp_path), mlflow_url="http://127.0.0.1:9",
                            workspace_url="http://127.0.0.1:9", watch_schedule=NEVER, repair_schedule=NEVER)
    settings.update({"MLFLOW_WEBHOOK_SECRET": reference, "DATABRICKS_WEBHOOK_SECRET": "",
                     "DATABRICKS_TOKEN": token_ref, "AZURE_CLIENT_ID": "reactor-identity-x7"})
    fuzz = Fuzzer(random.Random(SEED), now=time.time, over_http=True)
    with caplog.at_level("INFO"), function_host(settings) as host:
        split = urlsplit(host.url)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
        try:
            body = fuzz.mlflow_body()
            assert _post(conn, Case("signed with the reference", fuzz.mlflow_headers(body, secret=reference), body,
                                    frozenset({401}))) == 401
            conn.request("GET", "/api/status", headers={"x-functions-key": host.function_key})
            resp = conn.getresponse()
            status = json.loads(resp.read())
        finally:
            conn.close()
    assert resp.status == 200
    assert status["app"]["webhook_secrets"] == {"mlflow": "unresolved", "databricks": "missing"}
    assert any("MLFLOW_WEBHOOK_SECRET" in line for line in status["app"]["attention"])
    named = sorted(p["setting"] for p in status["app"]["settings"])
    assert named == ["AZURE_CLIENT_ID", "DATABRICKS_TOKEN", "DATABRICKS_TOKEN"]  # beside the id; unresolved
    assert all(any(p["setting"] in line for line in status["app"]["attention"]) for p in status["app"]["settings"])
    logged = caplog.text
    assert "startup.webhook_secret" in logged and "unresolved_secret" in logged
    assert "startup.setting: AZURE_CLIENT_ID" in logged and "startup.setting: DATABRICKS_TOKEN" in logged
    for value in (reference, token_ref, "reactor-identity-x7"):
        assert value not in logged and value not in json.dumps(status)
    assert "kv-reactor" not in json.dumps(status)
    assert table_rows(tmp_path / "reactor.db") <= FIXED_ROWS
