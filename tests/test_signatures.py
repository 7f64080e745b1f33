"""Signature checks: what each registry signs is accepted, anything else is refused with a
generic public message and a detailed reason, and no header value can make the check fail."""

import base64
import hashlib
import hmac
import time

import pytest

from shared.signatures import (
    MALFORMED_HEADER,
    MAX_SIGNATURES,
    MISMATCH,
    NO_SECRET,
    NO_SIGNATURE,
    OUTSIDE_WINDOW,
    PUBLIC_MESSAGE,
    UNRESOLVED_SECRET,
    SignatureError,
    Verified,
    databricks_signature,
    mlflow_signature,
    secret_problems,
    secret_state,
    verify_databricks,
    verify_delivery,
    verify_mlflow,
)

SECRET = "s3cret"
DBX_SECRET = "dbx-s3cret"
BODY = b'{"entity":"model_version","action":"created","data":{"name":"m","version":"1"}}'


def mlflow_headers(body=BODY, secret=SECRET, ts=None, delivery="d-1"):
    ts = str(int(time.time()) if ts is None else ts)
    return {
        "x-mlflow-delivery-id": delivery,
        "x-mlflow-timestamp": ts,
        "x-mlflow-signature": mlflow_signature(secret, delivery, ts, body),
    }


def check(headers, body=BODY, secret=SECRET, now=None):
    return verify_mlflow(headers, body, secret, now=time.time() if now is None else now, tolerance=300)


def deliver(headers, body=BODY, mlflow_secret=SECRET, databricks_secret=DBX_SECRET, now=None):
    return verify_delivery(headers, body, mlflow_secret=mlflow_secret, databricks_secret=databricks_secret,
                           now=time.time() if now is None else now, tolerance=300)


def refused(fn, *args, **kwargs) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        fn(*args, **kwargs)
    exc = info.value
    assert str(exc) == PUBLIC_MESSAGE
    return exc


def test_valid_mlflow_signature_returns_delivery_id():
    assert check(mlflow_headers()) == "d-1"


def test_mlflow_signature_matches_the_documented_construction():
    digest = hmac.new(b"k", b"id.123." + BODY, hashlib.sha256).digest()
    assert mlflow_signature("k", "id", "123", BODY) == "v1," + base64.b64encode(digest).decode()


def test_a_signature_made_by_the_mlflow_server_code_verifies():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    ts, delivery = str(int(time.time())), "6f1c1c2e-4f7a-4c84-9f0e-0a5b2e0c7d11"
    headers = {"x-mlflow-delivery-id": delivery, "x-mlflow-timestamp": ts,
               "x-mlflow-signature": _generate_hmac_signature(SECRET, delivery, ts, BODY.decode())}
    assert deliver(headers) == Verified("mlflow", delivery)


@pytest.mark.parametrize(
    "mutate, reason, detail",
    [
        (lambda h: h.update({"x-mlflow-signature": mlflow_signature("wrong", "d-1", h["x-mlflow-timestamp"], BODY)}),
         MISMATCH, "does not match"),
        (lambda h: h.pop("x-mlflow-timestamp"), MALFORMED_HEADER, "missing X-MLflow-Timestamp"),
        (lambda h: h.pop("x-mlflow-delivery-id"), MALFORMED_HEADER, "missing X-MLflow-Delivery-Id"),
        (lambda h: h.update({"x-mlflow-timestamp": "yesterday"}), MALFORMED_HEADER, "not Unix seconds"),
        (lambda h: h.update({"x-mlflow-delivery-id": "d-2"}), MISMATCH, "does not match"),
        (lambda h: h.update({"x-mlflow-signature": ""}), MALFORMED_HEADER, "X-MLflow-Signature is not"),
        (lambda h: h.update({"x-mlflow-signature": "sha256=abcd"}), MALFORMED_HEADER, "X-MLflow-Signature is not"),
    ],
)
def test_bad_mlflow_headers_are_refused(mutate, reason, detail):
    headers = mlflow_headers()
    mutate(headers)
    exc = refused(check, headers)
    assert exc.reason == reason and detail in exc.detail


def test_tampered_body_is_refused():
    assert refused(check, mlflow_headers(), body=BODY.replace(b'"1"', b'"2"')).reason == MISMATCH


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_stale_and_future_timestamps_are_refused(skew):
    now = time.time()
    exc = refused(check, mlflow_headers(ts=int(now) + skew), now=now)
    assert exc.reason == OUTSIDE_WINDOW and "outside the 300 s window" in exc.detail


def test_timestamp_inside_window_is_accepted():
    now = time.time()
    assert check(mlflow_headers(ts=int(now) - 299), now=now) == "d-1"


# Defect 8: a timestamp of hundreds of digits overflowed the window arithmetic (503) before
# the signature was checked; int() also took forms MLflow never sends.
@pytest.mark.parametrize(
    "timestamp",
    ["9" * 400, "1" * 13, "-1", "+1700000000", "1_700_000_000", "1700000000.5", "\u0661\u0667", "0x10",
     "1700000000, 1700000001", "1e9", "", "\ud800"],
)
def test_timestamps_that_are_not_plain_unix_seconds_are_refused_before_any_check(timestamp):
    headers = mlflow_headers()
    headers["x-mlflow-timestamp"] = timestamp
    exc = refused(check, headers)
    assert exc.reason == MALFORMED_HEADER and "1 to 12 ASCII digits" in exc.detail


@pytest.mark.parametrize("delivery", ["x" * 129, "d 1", "d\n1", "d\u00e91", "\ud800", "d/1", "", "a, b"])
def test_delivery_ids_that_cannot_be_a_key_are_refused(delivery):
    headers = mlflow_headers()
    headers["x-mlflow-delivery-id"] = delivery
    assert refused(check, headers).reason == MALFORMED_HEADER


def test_rotated_secrets_space_separated_signatures():
    headers = mlflow_headers()
    headers["x-mlflow-signature"] = "v1,AAAA " + headers["x-mlflow-signature"]
    assert check(headers) == "d-1"


# Defect 11: a repeated signature header arrives joined with ", "; the old split on spaces
# left a trailing comma on the first entry, so the outcome depended on the order.
@pytest.mark.parametrize("join", [", ", ",", " ", "  ", ",\t"])
@pytest.mark.parametrize("first_is_good", [True, False])
def test_repeated_signature_headers_match_in_any_order(join, first_is_good):
    headers = mlflow_headers()
    good = headers["x-mlflow-signature"]
    other = mlflow_signature("old-secret", "d-1", headers["x-mlflow-timestamp"], BODY)
    headers["x-mlflow-signature"] = join.join([good, other] if first_is_good else [other, good])
    assert check(headers) == "d-1"


def test_unknown_signature_versions_are_skipped_not_refused():
    headers = mlflow_headers()
    good = headers["x-mlflow-signature"]
    headers["x-mlflow-signature"] = "v1a,AAAA v2," + good[3:] + " " + good
    assert check(headers) == "d-1"
    headers["x-mlflow-signature"] = "v2," + good[3:]
    assert refused(check, headers).reason == MISMATCH


def test_a_signature_list_bigger_than_a_rotation_is_refused():
    headers = mlflow_headers()
    headers["x-mlflow-signature"] = " ".join(["v1,AAAA"] * MAX_SIGNATURES + [headers["x-mlflow-signature"]])
    assert refused(check, headers).reason == MALFORMED_HEADER
    headers["x-mlflow-signature"] = "v1," + "A" * 100_000
    assert refused(check, headers).reason == MALFORMED_HEADER


def test_no_configured_secret_refuses_everything():
    exc = refused(check, mlflow_headers(), secret="")
    assert exc.reason == NO_SECRET and "MLFLOW_WEBHOOK_SECRET" in exc.detail


# What App Service leaves in a setting whose Key Vault reference it could not resolve (Microsoft
# Learn, "Use Key Vault references as app settings", https://learn.microsoft.com/en-us/azure/app-service/app-service-key-vault-references):
# the reference itself, which anyone who read the template can sign with.
UNRESOLVED = [
    "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/mlflow-webhook-secret/)",
    "@Microsoft.KeyVault(VaultName=kv;SecretName=mlflow-webhook-secret)",
    " @microsoft.keyvault(SecretUri=https://kv.vault.azure.net/secrets/a(b)) ",  # one App Service could not parse
    "@Microsoft.AppConfiguration(Endpoint=https://ac.azconfig.io; Key=webhook)",
    "{{secrets/scope/webhook}}",
]


@pytest.mark.parametrize("reference", UNRESOLVED)
def test_an_unresolved_reference_is_no_secret_whoever_signs_with_it(reference):
    dbx = {"x-databricks-signature": databricks_signature(reference, BODY)}
    both = {**mlflow_headers(secret=reference), **dbx}
    for exc in (refused(check, mlflow_headers(secret=reference), secret=reference),
                refused(verify_databricks, dbx, BODY, reference),
                refused(deliver, both, mlflow_secret=reference, databricks_secret=reference),
                refused(deliver, mlflow_headers(secret=reference), mlflow_secret=reference, databricks_secret="")):
        assert exc.reason == UNRESOLVED_SECRET
        assert reference.strip() not in exc.detail and "WEBHOOK_SECRET" in exc.detail


def test_an_unresolved_reference_does_not_hide_the_other_secret():
    headers = {**mlflow_headers(secret=UNRESOLVED[0]), "x-databricks-signature": databricks_signature(DBX_SECRET, BODY)}
    assert deliver(headers, mlflow_secret=UNRESOLVED[0]).source == "databricks"


def test_secret_states_and_what_operators_are_told():
    assert [secret_state(v) for v in ("", "s3cret", *UNRESOLVED)] == ["missing", "set", *["unresolved"] * 5]
    assert secret_problems({"mlflow": "set", "databricks": "missing"}) == []
    problems = secret_problems({"mlflow": "unresolved", "databricks": "missing"})
    assert len(problems) == 1 and "MLFLOW_WEBHOOK_SECRET" in problems[0] and "refused" in problems[0]
    assert len(secret_problems({"mlflow": "missing", "databricks": "missing"})) == 1


def test_databricks_signature_is_lowercase_hex_hmac_of_body():
    sig = databricks_signature(SECRET, BODY)
    assert sig == hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    expected_id = "dbx-" + hashlib.sha256(BODY).hexdigest()[:32]
    assert verify_databricks({"x-databricks-signature": sig}, BODY, SECRET) == expected_id
    assert verify_databricks({"x-databricks-signature": sig.upper()}, BODY, SECRET) == expected_id


@pytest.mark.parametrize("first_is_good", [True, False])
def test_repeated_databricks_signature_headers_match_in_any_order(first_is_good):
    good, other = databricks_signature(SECRET, BODY), databricks_signature("old", BODY)
    value = ", ".join([good, other] if first_is_good else [other, good])
    assert verify_databricks({"x-databricks-signature": value}, BODY, SECRET).startswith("dbx-")


@pytest.mark.parametrize(
    "headers, body, reason, detail",
    [
        ({}, BODY, MALFORMED_HEADER, "missing X-Databricks-Signature"),
        ({"x-databricks-signature": "00" * 32}, BODY, MISMATCH, "does not match"),
        ({"x-databricks-signature": databricks_signature(SECRET, BODY)}, BODY + b" ", MISMATCH, "does not match"),
        ({"x-databricks-signature": databricks_signature("other", BODY)}, BODY, MISMATCH, "does not match"),
        ({"x-databricks-signature": "00"}, BODY, MALFORMED_HEADER, "64 hex digits"),
        ({"x-databricks-signature": "g" * 64}, BODY, MALFORMED_HEADER, "64 hex digits"),
        ({"x-databricks-signature": "\ud800" * 64}, BODY, MALFORMED_HEADER, "64 hex digits"),
    ],
)
def test_bad_databricks_signatures_are_refused(headers, body, reason, detail):
    exc = refused(verify_databricks, headers, body, SECRET)
    assert exc.reason == reason and detail in exc.detail


# verify_delivery: the scheme follows the signature header, never other X-MLflow-* headers.

def test_each_scheme_is_chosen_by_its_signature_header():
    assert deliver(mlflow_headers()) == Verified("mlflow", "d-1")
    dbx = deliver({"x-databricks-signature": databricks_signature(DBX_SECRET, BODY)})
    assert dbx.source == "databricks" and dbx.delivery_id.startswith("dbx-")


def test_a_databricks_delivery_carrying_other_mlflow_headers_is_databricks():
    headers = {"x-databricks-signature": databricks_signature(DBX_SECRET, BODY),
               "x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": "1"}
    assert deliver(headers).source == "databricks"


def test_no_signature_header_is_refused():
    exc = refused(deliver, {"x-mlflow-delivery-id": "d-1", "x-mlflow-timestamp": str(int(time.time()))})
    assert exc.reason == NO_SIGNATURE and "without a secret" in exc.detail
    assert refused(deliver, {}).reason == NO_SIGNATURE


def test_with_both_signatures_the_one_that_verifies_is_accepted():
    good_mlflow, good_dbx = mlflow_headers(), {"x-databricks-signature": databricks_signature(DBX_SECRET, BODY)}
    bad_mlflow = {**mlflow_headers(secret="wrong")}
    bad_dbx = {"x-databricks-signature": "00" * 32}
    assert deliver({**good_mlflow, **bad_dbx}).source == "mlflow"
    assert deliver({**bad_mlflow, **good_dbx}).source == "databricks"
    assert deliver({**good_mlflow, **good_dbx}).source == "mlflow"  # MLflow first: it has replay protection
    # A scheme whose secret is not configured is not tried.
    assert deliver({**good_mlflow, **good_dbx}, mlflow_secret="").source == "databricks"
    assert deliver({**good_mlflow, **good_dbx}, databricks_secret="").source == "mlflow"


def test_with_both_signatures_and_neither_verifying_both_reasons_are_kept():
    exc = refused(deliver, {**mlflow_headers(secret="wrong"), "x-databricks-signature": "00" * 32})
    assert exc.reason == MISMATCH
    assert "X-MLflow-Signature does not match" in exc.detail and "X-Databricks-Signature does not match" in exc.detail
    exc = refused(deliver, {**mlflow_headers(), "x-databricks-signature": "00" * 32}, mlflow_secret="",
                  databricks_secret="")
    assert exc.reason == NO_SECRET


def test_the_public_text_tells_nothing_the_record_does():
    now = time.time()
    cases = [
        ({"x-mlflow-signature": "v1,AAAA", "x-mlflow-delivery-id": "d", "x-mlflow-timestamp": "1"}, {}),
        (mlflow_headers(), {"mlflow_secret": ""}),
        ({"x-databricks-signature": databricks_signature(DBX_SECRET, BODY)}, {"databricks_secret": ""}),
        (mlflow_headers(secret="wrong"), {}),
        ({}, {}),
    ]
    details = set()
    for headers, secrets in cases:
        exc = refused(deliver, headers, now=now, **secrets)
        details.add(exc.detail)
        assert str(exc) == PUBLIC_MESSAGE and exc.args == (PUBLIC_MESSAGE,)
    assert len(details) == len(cases)
    assert any(str(int(now)) in d for d in details) and any("SECRET" in d for d in details)
