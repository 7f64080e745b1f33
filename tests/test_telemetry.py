"""Telemetry (shared/telemetry.py) over real rollouts through the engine (tests/engine.py: the real
handlers over SQLite, stand-ins for Model Serving and the registry).

The distro is configured through ``shared.telemetry.configure`` with OpenTelemetry's in-memory
span exporter, metric reader and log exporter beside the Azure Monitor exporters, whose
endpoints here refuse connections. Each case runs in a fresh interpreter: OpenTelemetry's
providers are set once per process, and what a process imported is a property of that process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Nothing listens on port 9 (discard) here: every export fails at once, nothing leaves the machine.
CONNECTION = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
              "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/")
PLANTED = "pw-Planted-9f3b"  # a password inside a failure reason; must never be exported
ENV = {
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",  # the exporter's own usage reports
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",  # its remote configuration
    "OTEL_TRACES_SAMPLER": "always_on",  # the distro's default samples 5 traces per second
}


def _child(case: str, tmp: str) -> None:
    """Runs in the subprocess: ``traced``, ``untraced`` or ``from_setting``; prints what it saw as JSON."""
    out = {"traced": _traced, "untraced": _untraced, "from_setting": _from_setting}[case](Path(tmp))
    print(json.dumps(out, default=str))


def _run(case: str, tmp: Path, **env: str) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    full.update(ENV, **env)
    code = f"from tests.test_telemetry import _child; _child({case!r}, {str(tmp)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _scenario(d: Any) -> None:
    """v1 by webhook (done); v2 by webhook, its smoke query first failing with an error that
    quotes a password, then answering a negative fare (rolled back: failed); v3 by deploy (done)."""
    from tests.engine import MODEL

    v1, v2, v3 = (d.registry.register() for _ in range(3))
    d.registry.versions = [v1]
    assert d.webhook(v1, "delivery-1").status == 202
    d.run()
    d.registry.versions = [v1, v2]
    d.serving_api.bad_answers.add(v2)
    answer = d.serving_api.query
    failures = [RuntimeError(f"inference proxy: postgresql://reactor:{PLANTED}@db.internal/x refused")]

    def query(name: str, dataframe_records: list[dict[str, Any]], served: str | None = None) -> Any:
        if failures:
            raise failures.pop()
        return answer(name, dataframe_records, served)

    d.serving_api.query = query
    assert d.webhook(v2, "delivery-2").status == 202
    d.run()
    d.registry.versions = [v1, v2, v3]
    d.command({"command": "deploy", "model": MODEL, "environment": "prod", "version": v3, "id": "ci-run-3"})
    d.run()


def _traced(tmp: Path) -> dict[str, Any]:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared import telemetry
    from tests.engine import Driver

    spans, logs, metrics = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    telemetry.configure(CONNECTION, span_processors=[SimpleSpanProcessor(spans)], metric_readers=[metrics],
                        log_record_processors=[SimpleLogRecordProcessor(logs)])
    d = Driver(tmp)
    _scenario(d)
    d.check_quiet()
    _http_call_in_a_unit()
    points = [{"attributes": dict(p.attributes), "count": p.count, "sum": p.sum}
              for rm in metrics.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
              if m.name == telemetry.ROLLOUT_DURATION for p in m.data.data_points]
    return {
        "spans": [{"name": s.name, "trace": s.context.trace_id, "id": s.context.span_id, "kind": s.kind.name,
                   "parent": s.parent.span_id if s.parent else None,
                   "remote_parent": bool(s.parent and s.parent.is_remote),
                   "start": s.start_time, "attributes": dict(s.attributes), "status": s.status.status_code.name,
                   "description": s.status.description, "events": [dict(e.attributes) for e in s.events]}
                  for s in spans.get_finished_spans()],
        "logs": [{"body": r.log_record.body, "attributes": dict(r.log_record.attributes),
                  "trace": r.log_record.trace_id, "span": r.log_record.span_id} for r in logs.get_finished_logs()],
        "points": points,
        "rollouts": [{"id": r["id"], "cid": r["cid"], "status": r["status"], "version": r["version"]}
                     for r in d.rollouts()],
    }


def _http_call_in_a_unit() -> None:
    """One HTTP call, as the SDK makes them, inside a unit of work ("http-probe")."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from shared.log import correlated

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with correlated("http-probe"):
            requests.get(f"http://127.0.0.1:{server.server_port}/api/2.0/serving-endpoints/fare-ep", timeout=10)
    finally:
        server.shutdown()


def _modules(prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def _untraced(tmp: Path) -> dict[str, Any]:
    from tests.engine import Driver

    d = Driver(tmp)
    version = d.registry.register()
    d.registry.versions = [version]
    assert d.webhook(version, "delivery-1").status == 202
    after_webhook = _modules(("opentelemetry", "azure.monitor"))
    d.run()
    # Loaded by now: shared.registry imports mlflow's exceptions, and mlflow imports OpenTelemetry.
    from opentelemetry import trace

    return {"after_webhook": after_webhook,
            "after_rollout": _modules(("azure.monitor", "opentelemetry.instrumentation")),
            "provider": type(trace.get_tracer_provider()).__name__, "done": [r["status"] for r in d.rollouts()]}


def _from_setting(tmp: Path) -> dict[str, Any]:
    from shared.log import correlated
    from tests.engine import Driver

    d = Driver(tmp)
    before = _modules(("azure.monitor",))
    version = d.registry.register()
    d.registry.versions = [version]
    d.webhook(version, "delivery-1")
    d.run()
    with correlated("again"):
        pass
    from opentelemetry import trace
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    handlers = [h for h in logging.getLogger("reactor").handlers if isinstance(h, LoggingHandler)]
    return {"before": before, "provider": type(trace.get_tracer_provider()).__name__, "log_handlers": len(handlers),
            "requests": RequestsInstrumentor().is_instrumented_by_opentelemetry}


def test_the_setting_configures_the_distro_at_the_first_handler_call_once(tmp_path: Path) -> None:
    out = _run("from_setting", tmp_path, APPLICATIONINSIGHTS_CONNECTION_STRING=CONNECTION)
    assert out == {"before": [], "provider": "TracerProvider", "log_handlers": 1, "requests": True}


def test_without_the_setting_nothing_of_opentelemetry_loads(tmp_path: Path) -> None:
    out = _run("untraced", tmp_path)
    assert out["done"] == ["done"]
    assert out["after_webhook"] == []
    # The registry client (mlflow) brings the OpenTelemetry API along; nothing here configures it.
    assert out["after_rollout"] == [] and out["provider"] == "ProxyTracerProvider"


def test_a_traced_run_has_one_trace_per_event_or_command_and_a_span_per_step(tmp_path: Path) -> None:
    out = _run("traced", tmp_path)
    spans, rows = out["spans"], out["rollouts"]
    assert sorted((r["version"], r["status"]) for r in rows) == [("1", "done"), ("2", "failed"), ("3", "done")]
    by_id = {s["id"]: s for s in spans}

    # One trace per correlation id: the delivery, the reconcile it sent and its rollout's steps.
    units = [s for s in spans if s["kind"] == "CONSUMER"]
    assert units and all(s["remote_parent"] and s["attributes"]["reactor.cid"] for s in units)
    traces: dict[str, set[int]] = defaultdict(set)
    for s in units:
        traces[s["attributes"]["reactor.cid"]].add(s["trace"])
    assert all(len(ids) == 1 for ids in traces.values()), traces
    assert len({t for ids in traces.values() for t in ids}) == len(traces)
    names = {cid: Counter(s["name"] for s in units if s["attributes"]["reactor.cid"] == cid) for cid in traces}
    for delivery in ("delivery-1", "delivery-2"):
        assert {"webhook", "command", "rollout"} <= set(names[delivery]), names[delivery]
    deploy_cid = next(r["cid"] for r in rows if r["version"] == "3")
    assert deploy_cid not in ("delivery-1", "delivery-2") and {"command", "rollout"} <= set(names[deploy_cid])

    # A span per rollout step, child of the unit of work that ran it, in its rollout's trace.
    steps = sorted((s for s in spans if s["name"].startswith("rollout.")), key=lambda s: s["start"])
    for row in rows:
        mine = [s for s in steps if s["attributes"]["reactor.rollout"] == row["id"]]
        trace_id = next(iter(traces[row["cid"]]))
        assert all(s["trace"] == trace_id and by_id[s["parent"]]["name"] == "rollout" for s in mine)
        order = [s["name"].removeprefix("rollout.") for s in mine]
        ran = [n for i, n in enumerate(order) if i == 0 or order[i - 1] != n]  # waits repeat a step
        if row["status"] == "done":
            # With a version serving before, it takes all traffic after promote and the old one is removed.
            assert ran[:7] == ["resolve", "validate", "features", "deploy", "wait_deploy", "smoke", "promote"], ran
            assert ran[7:] in ([], ["shift", "wait_shift", "bake", "retire", "wait_retire"]), ran
        else:
            assert ran[-3:] == ["smoke", "rollback", "wait_rollback"], ran
            assert any(s["status"] == "ERROR" for s in spans if s["name"].endswith(".query")
                       and by_id[s["parent"]]["attributes"]["reactor.rollout"] == row["id"])
    # A span per Model Serving call, under the step that made it.
    calls = [s for s in spans if s["name"].startswith("databricks.serving_endpoints.")]
    assert {"get", "create", "update_config", "query"} <= {s["name"].rsplit(".", 1)[1] for s in calls}
    assert all(by_id[s["parent"]]["name"].startswith(("rollout.", "command")) for s in calls)
    assert all(s["attributes"]["reactor.endpoint"] == "fare-ep" for s in calls)

    # Structured logs inside their span, fields as attributes.
    done = [r for r in out["logs"] if r["attributes"].get("reactor.event") == "rollout.done"]
    assert len(done) == 2 and all(r["span"] and r["attributes"]["reactor.model"] == "fare" for r in done)
    for r in out["logs"]:
        assert r["trace"] in traces[r["attributes"]["reactor.cid"]], r

    # The distro's requests instrumentation: an HTTP call is a client span under the unit that made it.
    probe = next(s for s in units if s["attributes"]["reactor.cid"] == "http-probe")
    http = [s for s in spans if s["parent"] == probe["id"]]
    assert [s["kind"] for s in http] == ["CLIENT"] and http[0]["name"] == "GET"

    # The rollout duration, once per ended rollout, with its outcome.
    outcomes = Counter()
    for p in out["points"]:
        assert p["attributes"]["model"] == "fare" and p["attributes"]["environment"] == "prod"
        outcomes[p["attributes"]["outcome"]] += p["count"]
    assert outcomes == Counter(r["status"] for r in rows)

    # The planted password reached a span (the failed query) and logs, masked.
    text = json.dumps(out)
    assert PLANTED not in text and "postgresql://reactor:***@db.internal" in text
