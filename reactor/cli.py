"""The operators' CLI: what serves where, what is rolling out and why it stopped, what drifted, what
was rejected, and the operators' commands (README "Progressive delivery", "Sending a command").

``python -m reactor SUBCOMMAND …`` or the ``reactor`` console script; ``--help`` on every
subcommand, ``--json`` for scripts (the data as the app's routes return it).

Backends (reactor.backend), one of:

- ``--storage sqlite:///path`` | ``azure`` | ``azure:<connection>``: the app's own tables and
  queues, in the ``REACTOR_STORAGE`` forms (default: the ``REACTOR_STORAGE`` environment variable;
  ``azure`` connections are resolved from the environment as the app resolves them, identity
  settings included); the status summary also reads the policy file (``--policy``, default
  ``REACTOR_POLICY_FILE`` or ``policy.yaml``);
- ``--url https://<app>/api`` with ``--key`` (default: ``REACTOR_FUNCTION_KEY``): the app's HTTP
  routes, the key sent as ``x-functions-key``.

Subcommands: ``status``, ``rollouts``, ``rollout ID``, ``records``, ``monitor``, ``policy check
FILE``, and the commands ``deploy``, ``promote``, ``pause``, ``resume``, ``abort``, ``rollback``,
``retrain``, ``check_drift``, validated with the queue's own schema (shared.commands) before they
are sent, so a bad argument is a usage error and nothing is sent. ``--wait`` follows the
command's journal record (and the rollouts it started) until it ends, printing each change.

Exit codes:

- 0: ok (a command sent; with ``--wait``, it ended ``done`` or ``ignored``);
- 1: what was asked about needs attention (a paused, failed or stopped rollout, drift, a failed
  check), a command ended ``failed``, ``rejected`` or ``superseded``, or a policy file is invalid;
- 2: usage error (argparse's), including a command argument the schema refuses;
- 3: not found (a rollout, a record, a policy file, a model);
- 4: cannot reach or use the backend (connection, authentication, storage settings);
- 5: ``--wait`` timed out before the command ended (it goes on in the app).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from reactor import render
from reactor.backend import Backend, BackendError, NotFound, Refused
from shared.rollouts import STOPPED

OK, ATTENTION, USAGE, NOT_FOUND, UNREACHABLE, TIMED_OUT = 0, 1, 2, 3, 4, 5
STEERING = ("promote", "pause", "resume", "abort", "rollback")
COMMANDS = ("deploy", *STEERING, "retrain", "check_drift")
MAX_SCAN = 20_000  # rows a listing reads at most to find the newest ones (keys are not in time order)
POLL_SECONDS = 0.5


class Usage(Exception):
    """A usage error found after parsing (argparse's own exit with 2)."""


def _common(json_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    if json_only:
        return p
    g = p.add_argument_group("backend (one of)")
    g.add_argument("--storage", help="sqlite:///PATH, azure or azure:CONNECTION (default: $REACTOR_STORAGE)")
    g.add_argument("--url", help="the app's API, https://APP.azurewebsites.net/api")
    g.add_argument("--key", help="function or host key for --url (default: $REACTOR_FUNCTION_KEY)")
    g.add_argument("--policy", type=Path, help="the app's policy file, for status with --storage "
                   "(default: $REACTOR_POLICY_FILE or policy.yaml)")
    return p


def _limit(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_SCAN:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_SCAN}")
    return int(text)


def _rollout_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{24}", text):
        raise argparse.ArgumentTypeError("a rollout id is 24 hex digits (reactor rollouts lists them)")
    return text


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="reactor", description=__doc__.split("\n\n")[0],
                                  epilog="exit codes: 0 ok, 1 needs attention or failed, 2 usage, 3 not found, "
                                  "4 backend unreachable, 5 --wait timed out",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="cmd", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("status", parents=[common], help="per model and environment: serving, aliases, last rollout, "
                       "last monitor verdict (exit 1 if any needs attention)")
    p.add_argument("--model", help="only this model")

    p = sub.add_parser("rollouts", parents=[common], help="rollouts, newest first")
    p.add_argument("--model", help="only this model's endpoints")
    p.add_argument("--status", help="only rollouts with this status (running, paused, done, failed, aborted, ...)")
    p.add_argument("--limit", type=_limit, default=20, help="at most this many (default 20)")

    p = sub.add_parser("rollout", parents=[common], help="one rollout: its timeline, analysis per step, its failure")
    p.add_argument("id", type=_rollout_id, help="the rollout id (24 hex digits)")
    p.add_argument("--model", help="look on this model's endpoints only")

    p = sub.add_parser("records", parents=[common], help="events and commands with their outcomes, newest first")
    p.add_argument("--kind", choices=["event", "command", "poison", "rejections"],
                   help="rejections: the counters and samples of refused requests")
    p.add_argument("--status", help="accepted, running, done, failed, superseded, rejected or ignored")
    p.add_argument("--limit", type=_limit, default=50, help="at most this many (default 50)")

    p = sub.add_parser("monitor", parents=[common], help="the latest monitor figures against their thresholds "
                       "(exit 1 on drift or a failed check)")
    p.add_argument("--model", help="only this model")
    p.add_argument("--history", type=_limit, default=1, help="decisions per environment, newest first (default 1)")

    p = sub.add_parser("policy", help="the policy file")
    psub = p.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    pc = psub.add_parser("check", parents=[_common(json_only=True)], help="validate a policy file (exit 1 if invalid)")
    pc.add_argument("file", type=Path)
    pc.add_argument("--registry-uri", help="the app's model registry, which decides whether aliases exist "
                    "(default: $MLFLOW_REGISTRY_URI, else $MLFLOW_TRACKING_URI, as the app reads it); given here, "
                    "the registry is also asked for the tracked versions' signatures, and a column the monitoring "
                    "names that a signature lacks is a warning (exit 0)")

    for name in COMMANDS:
        _command_parser(sub, name, common)
    for each in {id(q): q for q in sub.choices.values()}.values():
        # A usage error found after parsing is told with the subcommand's own usage line.
        each.set_defaults(usage_of=each)
    return top


_HELP = {
    "deploy": "roll a version out (--version, --alias, or the latest)",
    "promote": "the next traffic step now (--full: straight to 100%%)",
    "pause": "hold the rollout where it is",
    "resume": "go on from a pause",
    "abort": "traffic back to the champion at once; the rollout ends aborted",
    "rollback": "restore the previous config and aliases; the rollout ends rolled_back",
    "retrain": "run the environment's retraining job",
    "check_drift": "judge the monitoring windows now (or one --window-start/--window-end)",
}


def _command_parser(sub: Any, name: str, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(name, parents=[common], help=_HELP[name],
                       aliases=[name.replace("_", "-")] if "_" in name else [])
    p.set_defaults(cmd=name)
    p.add_argument("model")
    p.add_argument("environment")
    if name == "deploy":
        p.add_argument("--version", help="a version number")
        p.add_argument("--alias", help="the version an alias points to")
    if name in STEERING:
        p.add_argument("--rollout", help="a rollout other than the endpoint's active one")
    if name in (*STEERING, "retrain"):
        p.add_argument("--reason", required=name == "retrain", help="recorded with the command")
    if name == "promote":
        p.add_argument("--full", action="store_true", help="straight to 100%%")
    if name == "check_drift":
        p.add_argument("--window-start", help="ISO-8601 time with a zone")
        p.add_argument("--window-end", help="ISO-8601 time with a zone")
    p.add_argument("--id", help="idempotency key: the same id is acted on once (default: a new one)")
    p.add_argument("--wait", action="store_true", help="follow the command until it ends, printing each change")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds --wait waits (default 900)")


def open_backend(args: argparse.Namespace) -> Backend:
    storage, url = args.storage, args.url
    if storage and url:
        raise Usage("give --storage or --url, not both")
    if url:
        from reactor.http_backend import HttpBackend

        return HttpBackend(url, args.key or os.environ.get("REACTOR_FUNCTION_KEY"))
    storage = storage or os.environ.get("REACTOR_STORAGE")
    if not storage:
        raise Usage("no backend: give --storage or --url (or set REACTOR_STORAGE)")
    from reactor.storage_backend import StorageBackend

    policy = args.policy or Path(os.environ.get("REACTOR_POLICY_FILE") or "policy.yaml")
    return StorageBackend(storage, policy)


def _print(out: TextIO, args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text(), file=out)


def _entries(backend: Backend, model: str | None) -> list[dict[str, Any]]:
    entries = backend.status()
    if model is None:
        return entries
    mine = [e for e in entries if e["model"] == model]
    if not mine:
        raise NotFound(f"model {model!r} is not in the policy (models: {sorted({e['model'] for e in entries})})")
    return mine


def _pages(fetch: Callable[[str | None], tuple[list[dict[str, Any]], str | None]],
           err: TextIO) -> Iterator[dict[str, Any]]:
    """Rows page after page, up to MAX_SCAN of them (saying so when there were more)."""
    token: str | None = None
    read = 0
    while True:
        rows, token = fetch(token)
        read += len(rows)
        yield from rows
        if token is None:
            return
        if read >= MAX_SCAN:
            print(f"reactor: read the first {read} rows only; narrow the listing (--model, --kind)", file=err)
            return


def cmd_status(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    entries = _entries(backend, args.model)
    _print(out, args, entries, lambda: render.status(entries))
    return ATTENTION if any(e["attention"] for e in entries) else OK


def _status_of(row: dict[str, Any]) -> str:
    return "paused" if row.get("paused") and row.get("status") == "running" else row.get("status", "")


def cmd_rollouts(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    endpoints = [e["endpoint"] for e in _entries(backend, args.model)] if args.model else [None]
    rows = [r for ep in endpoints
            for r in _pages(lambda t, ep=ep: backend.rollouts(ep, limit=1000, continuation=t), err)
            if args.status is None or args.status in (r.get("status"), _status_of(r))]
    rows = sorted(rows, key=lambda r: r.get("created_at", 0), reverse=True)[:args.limit]
    _print(out, args, rows, lambda: render.rollouts(rows))
    return OK


def cmd_rollout(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for e in _entries(backend, args.model):
        try:
            got = backend.rollout(e["endpoint"], args.id)
        except (NotFound, Refused):
            continue
        _print(out, args, got, lambda got=got: render.rollout(got))
        row = got["rollout"]
        return ATTENTION if row.get("paused") or row.get("status") in ("failed", *STOPPED) else OK
    raise NotFound(f"no rollout {args.id} on the endpoints of " + (args.model or "the policy"))


def cmd_records(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.kind == "rejections":
        summary = backend.rejections()
        _print(out, args, summary, lambda: render.rejections(summary))
        return OK
    rows = list(_pages(lambda t: backend.records(args.kind, args.status, limit=1000, continuation=t), err))
    rows = sorted(rows, key=lambda r: r.get("received_at", 0), reverse=True)[:args.limit]
    _print(out, args, rows, lambda: render.records(rows))
    return OK


def cmd_monitor(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from shared.overview import DRIFT_VERDICTS

    found = []
    for e in _entries(backend, args.model):
        if args.history == 1:  # the newest is in the summary already
            rows = [e["monitor"]] if e["monitor"] else []
        else:
            rows = backend.decisions(e["endpoint"], limit=args.history, continuation=None)[0]
        found.append({"model": e["model"], "environment": e["environment"], "endpoint": e["endpoint"],
                      "decisions": rows or []})

    def text() -> str:
        lines = []
        for f in found:
            lines.append(f"{f['model']}/{f['environment']}  endpoint {f['endpoint']}")
            lines += [ln for d in f["decisions"] for ln in render.decision_lines(d, "  ")] or ["  no decision yet"]
        return "\n".join(lines)

    _print(out, args, found, text)
    latest = [f["decisions"][0]["verdict"] for f in found if f["decisions"]]
    return ATTENTION if any(v in DRIFT_VERDICTS or v == "failed" for v in latest) else OK


def cmd_policy(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Each problem on a line of its own, ``FILE:LINE:COLUMN: key.path: message`` as compilers
    print them; with ``--json``, the same as items (shared.policy_problems.Problem)."""
    from shared.policy import PolicyError, load_policy

    if not args.file.is_file():
        print(f"reactor: {args.file}: no such file", file=err)
        return NOT_FOUND
    try:
        # The same registry the app would use: the workspace registry refuses alias policies.
        registry = args.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI")
        policy = load_policy(args.file, registry or None)
    except PolicyError as exc:
        problems = [p.as_dict() for p in exc.problems] or [
            {"path": "(top level)", "line": None, "column": None, "message": str(exc), "severity": "error"}]
        if args.json:
            print(json.dumps({"file": str(args.file), "valid": False, "error": str(exc), "problems": problems,
                              "warnings": []}), file=out)
        print(f"reactor: invalid policy ({len(problems)} problem(s)):\n{exc}", file=err)
        return ATTENTION
    warnings = _signature_warnings(args.file, policy, args.registry_uri) if args.registry_uri else []
    envs = [f"{m.name}/{name}" for m in policy.models for name in m.environments]
    _print(out, args, {"file": str(args.file), "valid": True, "environments": envs,
                       "warnings": [w.as_dict() for w in warnings]},
           lambda: f"{args.file}: ok, {len(policy.models)} model(s), {len(envs)} environment(s): {', '.join(envs)}")
    if not args.json:
        for w in warnings:
            print(w.text(str(args.file)), file=err)
    return OK


def _signature_warnings(file: Path, policy: Any, registry_uri: str) -> list[Any]:
    """Columns the monitoring names that the tracked version's signature lacks (shared.policy_columns)."""
    from shared.policy_columns import column_warnings, registry_inputs
    from shared.policy_problems import Problem
    from shared.workspace import registry_client

    try:
        client = registry_client(registry_uri)
    except Exception as exc:  # no registry, no column check: said, never a traceback
        return [Problem("(top level)", None, None, f"cannot reach the registry {registry_uri} "
                        f"({type(exc).__name__}): the columns the monitoring names are not checked", "warning")]
    return column_warnings(policy, file.read_text(encoding="utf-8"), registry_inputs(client, registry_uri))


def command_of(args: argparse.Namespace) -> dict[str, Any]:
    """The command the arguments ask for, in the queue's plain form (README "Sending a command")."""
    cmd: dict[str, Any] = {"schema_version": 1, "command": args.cmd, "model": args.model,
                           "environment": args.environment, "id": args.id or f"cli-{uuid.uuid4().hex[:20]}"}
    for name in ("version", "alias", "rollout", "reason"):
        if getattr(args, name, None) is not None:
            cmd[name] = getattr(args, name)
    if getattr(args, "full", False):
        cmd["full"] = True
    if getattr(args, "window_start", None) or getattr(args, "window_end", None):
        cmd["window"] = {"start": args.window_start, "end": args.window_end}
    return cmd


def cmd_send(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO, body: bytes) -> int:
    key = backend.send(body)
    cmd = json.loads(body)
    progress = err if args.json else out
    if not args.json:
        print(f"sent {cmd['command']} {cmd['model']}/{cmd['environment']}: record command {key}", file=out)
    if not args.wait:
        if args.json:
            print(json.dumps({"record": key, "command": cmd}), file=out)
        return OK
    final = follow(backend, key, args.timeout, progress)
    if args.json:
        print(json.dumps({"record": key, "command": cmd, "final": final}, default=str), file=out)
    if final is None:
        print(f"reactor: {cmd['command']} not ended after {args.timeout:g} s; it goes on (record {key})", file=err)
        return TIMED_OUT
    return OK if final["status"] in ("done", "ignored") else ATTENTION


def follow(backend: Backend, key: str, timeout: float, out: TextIO) -> dict[str, Any] | None:
    """Poll the command's record, and the rollouts it started, printing each change, until the
    record is terminal (returned) or ``timeout`` passes (None)."""
    from shared.journal import TERMINAL

    t0 = time.monotonic()
    seen: dict[str, Any] = {}

    def say(what: str, state: Any, text: str) -> None:
        if seen.get(what) != state:
            seen[what] = state
            print(f"[{time.monotonic() - t0:6.1f}s] {text}", file=out, flush=True)

    while True:
        try:
            rec: dict[str, Any] | None = backend.record("command", key)
        except NotFound:
            rec = None
        if rec is None:
            say("record", "queued", "queued: waiting for the app to take it")
        else:
            # The rollouts first: the record ends after the rollout it started, and says so last.
            for endpoint, rid in rec.get("started") or []:
                row = backend.rollout(endpoint, rid)["rollout"]
                at = f" at {row['weight']}%" if row.get("weight") else ""
                last = (row.get("history") or [{}])[-1].get("note")
                say(rid, (row["status"], row["step"], row.get("weight")),
                    f"rollout {rid} v{row.get('version') or '?'}: {row['status']}, {row['step']}{at}"
                    + (f": {last}" if last else ""))
            outcome = rec.get("outcome")
            detail = rec.get("reason") or ("; ".join(outcome) if isinstance(outcome, list) else outcome or "")
            say("record", (rec["status"], detail), f"{rec['status']}" + (f": {detail}" if detail else ""))
            if rec["status"] in TERMINAL:
                return rec
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    p = parser()
    args = p.parse_args(argv)
    if args.cmd == "policy":
        return cmd_policy(args, out, err)
    body = b""
    if args.cmd in COMMANDS:
        from shared.commands import CommandRejected, parse

        body = json.dumps(command_of(args)).encode()
        try:
            parse(body, "cli")
        except CommandRejected as exc:
            args.usage_of.error(str(exc))
    backend: Backend | None = None
    try:
        backend = open_backend(args)
        if args.cmd in COMMANDS:
            return cmd_send(backend, args, out, err, body)
        return {"status": cmd_status, "rollouts": cmd_rollouts, "rollout": cmd_rollout, "records": cmd_records,
                "monitor": cmd_monitor}[args.cmd](backend, args, out, err)
    except Usage as exc:
        args.usage_of.error(str(exc))
    except NotFound as exc:
        print(f"reactor: {exc}", file=err)
        return NOT_FOUND
    except Refused as exc:
        print(f"reactor: refused: {exc}", file=err)
        return ATTENTION
    except BackendError as exc:
        print(f"reactor: {exc}", file=err)
        return UNREACHABLE
    except Exception as exc:
        if backend is not None and isinstance(exc, backend.transport_errors):
            from shared.redaction import redact

            # A storage error may quote the connection it failed on: never print a key.
            print(f"reactor: cannot reach the storage: {type(exc).__name__}: {redact(str(exc))}", file=err)
            return UNREACHABLE
        raise
