"""A stand-in for Application Insights' ingestion endpoint, for tests that run the real Azure
Monitor exporter: it accepts what the exporter POSTs to ``<IngestionEndpoint>/v2.1/track`` (a JSON
array of envelopes, Breeze's schema) and answers as the service does when it accepts every item,
so nothing is retried or kept offline. ``connection_string`` points the exporter at it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Ingestion:
    url: str
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)

    @property
    def connection_string(self) -> str:
        return (f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={self.url}/;"
                f"LiveEndpoint={self.url}/")

    def metrics(self, name: str) -> list[dict[str, Any]]:
        """Every exported point of the metric ``name``: its figures (``value``, ``count``, ``min``,
        ``max``) with its attributes as ``properties`` (customMetrics' customDimensions)."""
        out = []
        for e in self.envelopes:
            data = (e.get("data") or {}).get("baseData") or {}
            if (e.get("data") or {}).get("baseType") != "MetricData":
                continue
            out += [{**m, "properties": data.get("properties") or {}} for m in data.get("metrics") or []
                    if m.get("name") == name]
        return out

    def messages(self) -> list[dict[str, Any]]:
        """The exported log records (the ``traces`` table): ``message``, ``severityLevel``, ``properties``."""
        return [e["data"]["baseData"] for e in self.envelopes if (e.get("data") or {}).get("baseType") == "MessageData"]


@contextmanager
def ingestion() -> Iterator[Ingestion]:
    sink: Ingestion

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            items = json.loads(text)
            # A list of envelopes from the exporters; one object from the distro's other posts
            # (seen in test_demo: extending by a dict would add its keys as envelopes).
            items = items if isinstance(items, list) else [items]
            sink.bodies.append(text)
            sink.envelopes.extend(items)
            body = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = Ingestion(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
