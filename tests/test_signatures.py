import time

import pytest

from shared.signatures import (
    SignatureError,
    databricks_signature,
    mlflow_signature,
    verify_databricks,
    verify_mlflow,
)

SECRET = "s3cret"
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


def test_valid_mlflow_signature_returns_delivery_id():
    assert check(mlflow_headers()) == "d-1"


def test_mlflow_signature_matches_the_documented_construction():
    import base64
    import hashlib
    import hmac

    digest = hmac.new(b"k", b"id.123." + BODY, hashlib.sha256).digest()
    assert mlflow_signature("k", "id", "123", BODY) == "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda h: h.update({"x-mlflow-signature": mlflow_signature("wrong", "d-1", h["x-mlflow-timestamp"], BODY)}),
         "does not match"),
        (lambda h: h.pop("x-mlflow-signature"), "missing X-MLflow-Signature"),
        (lambda h: h.pop("x-mlflow-timestamp"), "missing X-MLflow-Timestamp"),
        (lambda h: h.pop("x-mlflow-delivery-id"), "missing X-MLflow-Delivery-Id"),
        (lambda h: h.update({"x-mlflow-timestamp": "yesterday"}), "not Unix seconds"),
        (lambda h: h.update({"x-mlflow-delivery-id": "d-2"}), "does not match"),
    ],
)
def test_bad_mlflow_headers_are_refused(mutate, message):
    headers = mlflow_headers()
    mutate(headers)
    with pytest.raises(SignatureError, match=message):
        check(headers)


def test_tampered_body_is_refused():
    with pytest.raises(SignatureError, match="does not match"):
        check(mlflow_headers(), body=BODY.replace(b'"1"', b'"2"'))


@pytest.mark.parametrize("skew", [-301, 301, -3600, 86400])
def test_stale_and_future_timestamps_are_refused(skew):
    now = time.time()
    headers = mlflow_headers(ts=int(now) + skew)
    with pytest.raises(SignatureError, match="outside the 300 s window"):
        check(headers, now=now)


def test_timestamp_inside_window_is_accepted():
    now = time.time()
    assert check(mlflow_headers(ts=int(now) - 299), now=now) == "d-1"


def test_rotated_secrets_space_separated_signatures():
    headers = mlflow_headers()
    headers["x-mlflow-signature"] = "v1,AAAA " + headers["x-mlflow-signature"]
    assert check(headers) == "d-1"


def test_no_configured_secret_refuses_everything():
    with pytest.raises(SignatureError, match="no MLflow webhook secret"):
        check(mlflow_headers(), secret="")


def test_databricks_signature_is_lowercase_hex_hmac_of_body():
    import hashlib
    import hmac

    sig = databricks_signature(SECRET, BODY)
    assert sig == hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    verify_databricks({"x-databricks-signature": sig}, BODY, SECRET)
    verify_databricks({"x-databricks-signature": sig.upper()}, BODY, SECRET)


@pytest.mark.parametrize(
    "headers, body, message",
    [
        ({}, BODY, "missing X-Databricks-Signature"),
        ({"x-databricks-signature": "00" * 32}, BODY, "does not match"),
        ({"x-databricks-signature": databricks_signature(SECRET, BODY)}, BODY + b" ", "does not match"),
        ({"x-databricks-signature": databricks_signature("other", BODY)}, BODY, "does not match"),
    ],
)
def test_bad_databricks_signatures_are_refused(headers, body, message):
    with pytest.raises(SignatureError, match=message):
        verify_databricks(headers, body, SECRET)
