"""Secrets at the edges (issue 16, items 7-9): what a driver, an anonymous sender or a redirect
would carry out of the app in clear.

- The online store's errors, for every bad URL the real drivers (psycopg for PostgreSQL,
  PyMySQL for MariaDB, sqlite3) refuse, carry no part of the URL's password, in their text or
  their traceback, and neither does the feature table's outcome that quotes them.
- Rejection samples are stored and served redacted, through the app over HTTP.
- The CLI's HTTP backend never sends the function key to where a redirect points.
"""

from __future__ import annotations

import http.server
import json
import threading
import traceback
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from local.services import ensure_mariadb, ensure_postgres
from reactor.backend import BackendError
from reactor.http_backend import HttpBackend
from shared import journal, rejections
from shared.online_store import OnlineStore, OnlineStoreError
from shared.online_store import redact as redact_store_url
from shared.redaction import MASK, redact, url_secrets
from shared.storage import open_tables

PAT = "dapi0123456789abcdef0123456789abcdef"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhcHAiLCJhdWQiOiIyZmY4In0.c2lnbmF0dXJlLWJ5dGVz"
ACCOUNT_KEY = "Zm9vYmFyYmF6cXV4K2FjY291bnRrZXk9PQ=="
SIG = "sIgNaTuRe%2Bvalue%3D"


def echoes(text: str, secret: str) -> list[str]:
    """The runs of four characters of ``secret`` (or all of a shorter one) found in ``text``."""
    width = min(4, len(secret))
    return sorted({secret[i:i + width] for i in range(len(secret) - width + 1) if secret[i:i + width] in text})


# ------------------------------------------------------------------------------- item 7: driver errors
@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="*"), min_size=1, max_size=40),
       st.data())
@settings(max_examples=300, deadline=None)
def test_any_cut_of_a_url_password_a_driver_quotes_is_masked(password: str, data: st.DataObject) -> None:
    """Whatever the password holds (``%``, ``@``, ``/``, spaces) and wherever a driver cuts it,
    the text that quotes it, whole or in part, keeps none of it."""
    url = f"postgresql://app:{password}@127.0.0.1:1/feat"
    start = data.draw(st.integers(0, len(password) - 1))
    end = data.draw(st.integers(min(len(password), start + 4), len(password)))
    text = f"cannot connect to {url}: invalid percent-encoded token: \"{password[start:end]}@127.0.0.1\""
    out = redact(text, url_secrets(url))
    assert echoes(out, password) == []
    assert redact(out, url_secrets(url)) == out


def test_url_secrets_name_the_password_and_secret_parameters_raw_and_decoded() -> None:
    assert url_secrets("postgresql://app:p%40ss@db/feat?sslmode=require&password=a%2Fb") == (
        "p%40ss", "p@ss", "a%2Fb", "a/b")
    assert url_secrets("mysql://root:p@ss/w@db/feat") == ("p@ss/w",)  # up to the last '@'
    assert url_secrets("postgresql://app@db/feat") == ()
    assert url_secrets("sqlite:////tmp/x.db") == ()


@pytest.mark.parametrize("text, secret", [
    ("postgresql://app:my pass word@db.example:5432/feat unreachable", "my pass word"),
    ('{"dsn": "mysql://root:pa%zz%@127.0.0.1/feat"}', "pa%zz%"),
    ("mysql://root:p@ss w@127.0.0.1:3306: (1045, \"Access denied for user 'root'@'127.0.0.1'\")", "p@ss w"),
])
def test_a_url_password_is_masked_without_knowing_the_url(text: str, secret: str) -> None:
    """Where nobody knows the URL (a rejected body): spaces and invalid escapes are masked too."""
    out = redact(text)
    assert secret not in out and ("@127.0.0.1" in out or "@db.example" in out)


PG = "127.0.0.1:5432"
MY = "127.0.0.1:3306"
# (URL, the password's distinctive part): each an error a driver raises for a bad URL, on the
# loopback only (a closed port for an unreachable host).
BAD_URLS = [
    (f"postgresql://app:pa%zzZq7XwPgA@{PG}/feat", "Zq7XwPgA"),  # invalid escape, quoted by libpq
    (f"postgresql://app:Zq7XwPgB%@{PG}/feat", "Zq7XwPgB"),  # a '%' with nothing after
    (f"postgresql://app:Zq7%00XwPgC@{PG}/feat", "XwPgC"),  # %00, which libpq forbids
    (f"postgresql://app:Zq7Xw PgD@{PG}/feat", "Zq7Xw PgD"),  # an unencoded space
    (f"postgresql://app:pa/ss%zzZq7XwPgE@{PG}/feat", "ss%zzZq7XwPgE"),  # libpq cuts at the '/'
    (f"postgresql://app@{PG}/feat?password=pa%zzZq7XwPgF", "Zq7XwPgF"),  # in the query
    ("postgresql://app:Zq7XwPgG@[::1]x/feat", "Zq7XwPgG"),  # libpq quotes the whole URL
    ("postgresql://app:Zq7XwPgH@[::1/feat", "Zq7XwPgH"),  # urlsplit refuses it
    ("postgresql://app:Zq7XwPgI@127.0.0.1:1/feat", "Zq7XwPgI"),  # nothing listens there
    (f"postgresql://nosuchrole:Zq7XwPgJ@{PG}/postgres", "Zq7XwPgJ"),  # authentication fails
    (f"postgresql://app:Zq7XwPgK@{PG}/feat?nosuchoption=1", "Zq7XwPgK"),
    ("postgresql://app:Zq7XwPgL@127.0.0.1:notaport/feat", "Zq7XwPgL"),
    (f"mysql://root:pa%zzZq7XwMyA@{MY}/feat", "Zq7XwMyA"),  # PyMySQL unquotes leniently
    ("mysql://root:Zq7XwMyB@127.0.0.1:1/feat", "Zq7XwMyB"),
    (f"mysql://root:Zq7XwMyC@{MY}/feat", "Zq7XwMyC"),  # access denied
    (f"mysql://root:p@Zq7XwMyD@{MY}/feat", "Zq7XwMyD"),
    (f"mysql://root:Zq7Xw\u20acMyE@{MY}/feat", "Zq7Xw\u20acMyE"),  # not latin-1: PyMySQL's UnicodeEncodeError
    ("mysql://root:Zq7XwMyF@127.0.0.1:notaport/feat", "Zq7XwMyF"),
    ("mysql://root:Zq7XwMyG@127.0.0.1:99999/feat", "Zq7XwMyG"),
    ("mysql://root:Zq7XwMyH@[::1/feat", "Zq7XwMyH"),
    ("sqlite:////nonexistent/dir/x.db?password=Zq7XwLiteA", "Zq7XwLiteA"),
]


@pytest.fixture(scope="module")
def servers() -> None:
    ensure_postgres()
    ensure_mariadb()


@pytest.mark.parametrize("url, secret", BAD_URLS)
def test_no_driver_error_for_a_bad_url_carries_its_password(servers: None, url: str, secret: str) -> None:
    with pytest.raises((OnlineStoreError, ValueError)) as err:
        OnlineStore(url).close()
    # What callers store and serve (str), what a log of it shows (repr, the traceback a host
    # prints for an exception nobody caught: the driver's own exception is not chained).
    for shown in (str(err.value), repr(err.value), "".join(traceback.format_exception(err.value))):
        assert echoes(shown, secret) == [], shown
    assert MASK in str(err.value) and redact_store_url(url) in str(err.value)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A workspace client on the local workspace and a feature table in its catalog."""
    import pandas as pd
    from databricks.sdk import WorkspaceClient

    from local.workspace import LocalWorkspace

    root = tmp_path_factory.mktemp("secrets")
    with LocalWorkspace(token="secrets-token", registry_uri=f"sqlite:///{root / 'mlflow.db'}",
                        data_dir=root / "ws") as ws:
        name = f"main.secrets{uuid.uuid4().hex[:8]}.features"
        ws.catalog.create_table(name, pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0]}), primary_keys=["id"],
                                change_data_feed=True)
        yield WorkspaceClient(host=ws.url, token="secrets-token"), name


@pytest.mark.parametrize("url, secret", [BAD_URLS[0], BAD_URLS[4], BAD_URLS[6], BAD_URLS[14], BAD_URLS[16]])
def test_a_feature_tables_outcome_quotes_the_store_without_its_password(servers, source, url: str,
                                                                         secret: str) -> None:
    """What a rollout step or a publish_features command stores: the table's status note, or the
    error of a URL that cannot be used at all."""
    from shared import features as feature_tables
    from shared.policy import Features

    w, name = source
    features = Features.model_validate({"store": {"kind": "rdbms", "connection_setting": "STORE_URL"},
                                        "tables": [{"source": name, "primary_keys": ["id"]}]})
    try:
        [status] = feature_tables.ensure(w, "local0warehouse1", features, {"STORE_URL": url}, {}, now=0.0,
                                         budget_seconds=5)
    except ValueError as exc:
        outcome = str(exc)
    else:
        assert status.state == "pending" and "unavailable" in status.note, status
        outcome = status.note
    assert echoes(outcome, secret) == [] and redact_store_url(url) in outcome


# ------------------------------------------------------------------------------- item 8: rejection samples
SECRETS = {"password": "hunter2hunter2", "pat": PAT, "jwt": JWT, "account key": ACCOUNT_KEY, "sig": SIG,
           "url password": "pa%zz word"}


def _secret_body() -> bytes:
    return json.dumps({
        "entity": "model_version", "action": "created", "password": SECRETS["password"],
        "note": f"token {PAT} and Bearer {JWT}",
        "storage": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={ACCOUNT_KEY};EndpointSuffix=x",
        "link": f"https://a.blob.core.windows.net/c/b?sv=2022-11-02&sig={SIG}&se=2027-01-01",
        "dsn": f"postgresql://app:{SECRETS['url password']}@db.example:5432/feat",
    }).encode()


def test_rejection_samples_are_stored_and_served_without_the_secrets_sent(app) -> None:
    from local.stack import HOST_KEY

    body = _secret_body()
    assert app.post_webhook(body, headers={"Content-Type": "application/json"}).status_code == 401
    refused = requests.post(f"{app.url}/api/commands", data=b'{"kind": "nope", ' + body[1:],
                            headers={"x-functions-key": HOST_KEY}, timeout=30)
    assert refused.status_code == 400
    served = requests.get(f"{app.url}/api/records", params={"kind": "rejections"},
                          headers={"x-functions-key": HOST_KEY}, timeout=30)
    page = requests.get(f"{app.url}/api/status/rejections", headers={"x-functions-key": HOST_KEY}, timeout=30)
    assert served.status_code == page.status_code == 200
    samples = [s for entry in served.json()["rejections"].values() for s in entry["samples"]]
    assert sorted(s["code"] for s in samples) == ["bad_command", "no_signature"]
    assert all('"password": "***"' in s["excerpt"] for s in samples)
    stored = json.dumps([e.data for e in app.tables.query(rejections.TABLE)])
    for name, secret in SECRETS.items():
        for where, text in (("served", served.text), ("page", page.text), ("stored", stored)):
            assert secret not in text, (name, where)


def test_a_secret_the_excerpt_cut_would_split_is_masked_whole(tmp_path) -> None:
    tables = open_tables(f"sqlite:///{tmp_path / 'state.db'}")
    pad = "x" * (rejections._EXCERPT - len('{"pad": "", "password": "') - 4)
    body = json.dumps({"pad": pad, "password": "hunter2hunter2"}).encode()  # the cut falls inside it
    rejections.note(tables, 401, "no_signature", "no signature", body)
    (sample,) = rejections.summary(tables)["401"]["samples"]
    assert echoes(sample["excerpt"], "hunter2hunter2") == [] and len(sample["excerpt"]) <= rejections._EXCERPT
    stored = tables.get(rejections.TABLE, "401", "sample-001").data
    assert echoes(stored["excerpt"], "hunter2hunter2") == []


def test_a_rejected_record_masks_a_secret_its_excerpt_cut_would_split(tmp_path) -> None:
    """The journal keeps an excerpt of a body it rejected: a credential across its cut is masked."""
    tables = open_tables(f"sqlite:///{tmp_path / 'state.db'}")
    pad = "x" * (journal._MAX_EXCERPT - len('{"pad": "", "password": "') - 4)
    body = json.dumps({"pad": pad, "password": "hunter2hunter2"}).encode()
    excerpt = journal.excerpt(body)
    assert echoes(excerpt, "hunter2hunter2") == [] and excerpt.endswith("…")
    journal.record(tables, "command", journal.key("msg", "m1"), "rejected", excerpt=excerpt)
    assert echoes(json.dumps(journal.get(tables, "command", journal.key("msg", "m1"))), "hunter2hunter2") == []


def test_samples_kept_before_redaction_are_served_redacted(tmp_path) -> None:
    tables = open_tables(f"sqlite:///{tmp_path / 'state.db'}")
    rejections.note(tables, 401, "no_signature", "no signature", b"{}")
    tables.upsert(rejections.TABLE, "401", "sample-001", {"code": "no_signature", "at": 1.0,
                                                          "excerpt": f'{{"token": "{PAT}"}}'})
    (sample,) = rejections.summary(tables)["401"]["samples"]
    assert PAT not in json.dumps(sample)


# ------------------------------------------------------------------------------- item 9: redirects
class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 with ``{"status": []}`` and records every request's headers."""

    seen: list[dict[str, str]]

    def _answer(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = json.dumps({"status": [], "record": "msg~1"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _Redirector(_Recorder):
    """Redirects every request (status and target set per server) and records it."""

    status: int
    target: str  # put before the request's path
    query: str  # put after it

    def _answer(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(self.status)
        self.send_header("Location", self.target + self.path + self.query)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer


def _serve(handler: type[http.server.BaseHTTPRequestHandler], **attrs: Any) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (handler,), {"seen": [], **attrs}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def other_origin() -> Iterator[http.server.ThreadingHTTPServer]:
    server = _serve(_Recorder)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", ["status", "send"])
def test_the_cli_never_sends_its_key_where_a_redirect_points(other_origin, status: int, call: str) -> None:
    there = f"http://127.0.0.1:{other_origin.server_address[1]}"
    here = _serve(_Redirector, status=status, target=f"{there}/elsewhere", query=f"?sig={SIG}")
    try:
        key = uuid.uuid4().hex
        backend = HttpBackend(f"http://127.0.0.1:{here.server_address[1]}/api", key)
        with pytest.raises(BackendError) as err:
            backend.status() if call == "status" else backend.send(b'{"kind": "pause"}')
        assert [h.get("x-functions-key") for h in here.RequestHandlerClass.seen] == [key]
        assert other_origin.RequestHandlerClass.seen == []  # the other origin got nothing at all
        message = str(err.value)
        assert f"{status} redirect to another origin" in message and f"{there}/elsewhere/api/" in message
        assert "sig=***" in message
        assert SIG not in message and key not in message
    finally:
        here.shutdown()
        here.server_close()


def test_a_redirect_on_the_same_origin_is_reported_too() -> None:
    here = _serve(_Redirector, status=302, target="", query="")
    try:
        backend = HttpBackend(f"http://127.0.0.1:{here.server_address[1]}/api", "k")
        with pytest.raises(BackendError, match="302 redirect on the same origin"):
            backend.status()
        assert len(here.RequestHandlerClass.seen) == 1
    finally:
        here.shutdown()
        here.server_close()
