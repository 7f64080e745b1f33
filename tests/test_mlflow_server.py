"""local.mlflow_server: a real `mlflow server` that delivers signed MLflow 3 webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from local.mlflow_server import MlflowServer, MlflowServerError
from local.taxi import register_broken_version, sample_records, train_and_register, using_mlflow_uri

SECRET = "s3cret"


class _Receiver:
    """A loopback HTTP endpoint that records every POST (headers and raw body)."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.arrived:
                    receiver.deliveries.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/mlflow"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            return list(self.deliveries)


def _group_pids(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.add(int(entry.name))
            except ProcessLookupError:
                continue
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _expected_signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def test_server_delivers_signed_model_version_webhook_and_stops_cleanly(tmp_path: Path):
    data_dir = tmp_path / "mlflow"
    with _Receiver() as receiver, MlflowServer(data_dir=data_dir, port=0) as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert srv.port and srv.port > 0
        assert srv.start_seconds is not None and srv.start_seconds < 60
        with urllib.request.urlopen(f"{srv.url}/health", timeout=5) as resp:
            assert resp.status == 200
        server_pids = _group_pids(srv.pid)
        assert srv.pid in server_pids and len(server_pids) >= 2  # mlflow CLI + uvicorn worker

        client = MlflowClient(tracking_uri=srv.url, registry_uri=srv.url)
        webhook = client.create_webhook(
            name="reactor", url=receiver.url, events=["model_version.created"], secret=SECRET
        )
        assert webhook.webhook_id

        registered_at = time.time()
        version = train_and_register(srv.url, model_name="taxi_fare", seed=0, n=2000)
        assert version == "1"

        deliveries = receiver.wait_for(1, timeout=20)
        assert deliveries, f"no webhook delivery within 20 s; server log:\n{srv.log_tail()}"
        time.sleep(0.5)  # nothing else subscribed may arrive, and no duplicate
        assert len(receiver.deliveries) == 1
        delivery = deliveries[0]
        headers = {k.lower(): v for k, v in delivery["headers"].items()}
        assert delivery["path"] == "/hooks/mlflow"
        assert headers["content-type"] == "application/json"
        delivery_id = headers["x-mlflow-delivery-id"]
        timestamp = headers["x-mlflow-timestamp"]
        assert len(delivery_id) == 36 and delivery_id.count("-") == 4  # a UUID
        assert timestamp.isdigit() and abs(int(timestamp) - registered_at) < 60

        body_text = delivery["body"].decode("utf-8")
        expected = _expected_signature(SECRET, delivery_id, timestamp, body_text)
        assert hmac.compare_digest(headers["x-mlflow-signature"], expected)
        assert headers["x-mlflow-signature"] != _expected_signature("wrong", delivery_id, timestamp, body_text)

        body = json.loads(body_text)
        assert body["entity"] == "model_version"
        assert body["action"] == "created"
        assert body["data"]["name"] == "taxi_fare"
        assert body["data"]["version"] == "1"
        assert "timestamp" in body
        # mlflow 3.17.2 puts the request's run_id in the payload. log_model registers from
        # models:/<logged model id> without one, so it is null although the stored version
        # has the run id: a receiver must look the version up instead of trusting run_id.
        assert body["data"]["source"].startswith("models:/m-")
        assert body["data"]["run_id"] is None
        stored = client.get_model_version("taxi_fare", "1")
        assert stored.version == "1"  # str over REST (the SQL store in-process gives int)
        assert stored.run_id and stored.source == body["data"]["source"]

        # Artifacts went through the server's proxy into data_dir, and load back through it.
        assert list((data_dir / "artifacts").rglob("MLmodel"))
        with using_mlflow_uri(srv.url):
            model = mlflow.pyfunc.load_model("models:/taxi_fare/1")
        predictions = np.asarray(model.predict(pd.DataFrame(sample_records(n=3, seed=1))))
        assert predictions.shape == (3,) and np.all(predictions > 0)

        pgid = srv.pid
    # Leaving the block stopped the server: the whole process group is gone.
    assert not srv.running and srv.pid is None
    assert not any(_alive(pid) for pid in server_pids)
    assert not _group_pids(pgid)
    assert _processes_mentioning(str(data_dir)) == []
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/health", timeout=2)
    srv.stop()  # idempotent

    # A restarted server on the same data_dir still knows the webhook and can decrypt its
    # secret (the Fernet key is kept in data_dir; mlflow would otherwise draw a new one).
    with _Receiver() as receiver2:
        with MlflowServer(data_dir=data_dir) as again:
            client = MlflowClient(tracking_uri=again.url, registry_uri=again.url)
            client.update_webhook(webhook.webhook_id, url=receiver2.url)
            assert register_broken_version(again.url, model_name="taxi_fare") == "2"
            deliveries = receiver2.wait_for(1, timeout=20)
            assert deliveries, f"no delivery after restart; server log:\n{again.log_tail()}"
        headers = {k.lower(): v for k, v in deliveries[0]["headers"].items()}
        body_text = deliveries[0]["body"].decode("utf-8")
        assert headers["x-mlflow-signature"] == _expected_signature(
            SECRET, headers["x-mlflow-delivery-id"], headers["x-mlflow-timestamp"], body_text
        )
        assert json.loads(body_text)["data"]["version"] == "2"
        assert headers["x-mlflow-delivery-id"] != delivery_id
    assert _processes_mentioning(str(data_dir)) == []


def test_start_raises_with_log_tail_when_the_server_dies(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]  # bound, not listening: uvicorn cannot bind it
        srv = MlflowServer(data_dir=tmp_path / "mlflow", port=port)
        with pytest.raises(MlflowServerError) as failure:
            srv.start(timeout=60)
    message = str(failure.value).lower()
    assert "exited" in message
    assert "address already in use" in message
    assert not srv.running
    assert _processes_mentioning(str(tmp_path / "mlflow")) == []
