"""The operators' CLI: what serves where, what is rolling out and why it stopped, what drifted, what
was rejected, and the operators' commands (README "Progressive delivery", "Sending a command").

``reactor SUBCOMMAND …`` (the console script ``pip install -e .`` installs; from any folder) or
``python -m reactor``, following the conventions of ``kubectl`` and ``az`` (Kubernetes, "kubectl
Usage Conventions", https://kubernetes.io/docs/reference/kubectl/conventions/; Microsoft Learn,
"Output formats for Azure CLI commands", https://learn.microsoft.com/en-us/cli/azure/format-output-azure-cli):
``--version``; the global flags (the backend, ``--policy``, ``-o``/``--output``, ``--json``) before
or after the subcommand; ``-o table|wide|json`` (``--json`` is ``-o json``: the data as the app's
routes return it, its times in ISO 8601 with their zone, as the text shows them); choices checked
with a did-you-mean; examples in every subcommand's ``--help``; ``reactor completion bash|zsh``
prints a completion script (reactor.completion).

Backends (reactor.backend), one of:

- ``--storage sqlite:///path`` | ``azure`` | ``azure:<connection>``: the app's own tables and
  queues, in the ``REACTOR_STORAGE`` forms (default: the ``REACTOR_STORAGE`` environment variable;
  ``azure`` connections are resolved from the environment as the app resolves them, identity
  settings included); the status summary also reads the policy file (``--policy``, default
  ``REACTOR_POLICY_FILE`` or ``policy.yaml``);
- ``--url https://<app>/api`` with ``--key`` (default: ``REACTOR_FUNCTION_KEY``): the app's HTTP
  routes, the key sent as ``x-functions-key``.

Subcommands: ``status``, ``rollouts``, ``rollout ID``, ``records``, ``monitor``, ``policy check
FILE``, ``wait RECORD``, ``doctor``, ``completion SHELL``, and the commands ``deploy``, ``promote``,
``pause``, ``resume``, ``abort``, ``rollback``, ``hold``, ``release``,
``retrain``, ``check_drift``, validated with the queue's own schema (shared.commands) before they
are sent, so a bad argument is a usage error and nothing is sent; a command the app would refuse
is refused before it is sent where the status summary tells (a steering command with no rollout
in progress, a ``retrain`` inside the cooldown). ``--wait`` follows the command to its outcome
(reactor.follow: the rollout it started or joined ended, or reached the state a steering command
asks for), printing each change; ``reactor wait RECORD`` re-attaches to a command sent before.
With ``--storage``, steering commands, ``retrain`` and ``--wait`` read the status summary, so
they need the policy file as ``status`` does.

Exit codes:

- 0: ok (a command sent; with ``--wait``, it reached what it asked for);
- 1: what was asked about needs attention (a paused or failed rollout, drift, a failed check; for
  ``rollout ID`` also a stopped one), a command ended ``failed`` or ``superseded`` or its rollout
  ended otherwise than asked (a deploy's rollout failed, a promoted one was rolled back), or a
  policy file is invalid. ``status`` notes a last rollout an operator aborted or rolled back, but
  does not exit 1 for it: its outcome is what the operator asked for (shared.overview.alerts);
- 2: usage error (argparse's), including a command argument the schema refuses;
- 3: not found (a rollout, a record, a policy file, a model);
- 4: cannot reach or use the backend (connection, authentication, storage settings);
- 5: ``--wait`` timed out before the command reached its outcome (it goes on in the app; the
  message says how to re-attach: ``reactor wait RECORD``);
- 6: refused: not sent because the app would refuse it, or refused by the app (recorded
  ``rejected``, nothing changed), or a ``retrain`` that launched nothing (cooldown, a run in flight);
- 141: the reader of the output went away (``reactor records | head -1``), said nothing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from reactor import __version__, render
from reactor.backend import Backend, BackendError, NotFound, Refused
from reactor.completion import SHELLS
from shared import rollouts
from shared.journal import TERMINAL
from shared.overview import alerts
from shared.rollouts import STOPPED
from shared.settings import APP_ROOT

OK, ATTENTION, USAGE, NOT_FOUND, UNREACHABLE, TIMED_OUT, REFUSED = 0, 1, 2, 3, 4, 5, 6
BROKEN_PIPE = 128 + 13  # as a shell reports a command ended by SIGPIPE (`yes | head` exits 141)
STEERING = ("promote", "pause", "resume", "abort", "rollback")
COMMANDS = ("deploy", *STEERING, "hold", "release", "retrain", "check_drift")
# Refused before sending when the environment has no rollout in progress. Not ``rollback``: after a
# finished rollout it undoes it (handlers/steering.py), which the app refuses only without a
# previous champion.
NEEDS_A_ROLLOUT = ("promote", "pause", "resume", "abort")
MAX_SCAN = 20_000  # rows a listing reads at most to find the newest ones (keys are not in time order)


class Usage(Exception):
    """A usage error found after parsing (argparse's own exit with 2)."""


OUTPUTS = ("table", "wide", "json")
RECORD_KINDS = ("event", "command", "poison", "rejections")
RECORD_STATUSES = ("accepted", "running", *sorted(TERMINAL))
ROLLOUT_STATUSES = ("pending", "running", "paused", *sorted(rollouts.TERMINAL))


def choice(what: str, values: tuple[str, ...]) -> Callable[[str], str]:
    """An argument type taking one of ``values``; anything else is a usage error naming the closest
    (difflib), as ``az`` and ``kubectl`` suggest a misspelt word."""

    def check(text: str) -> str:
        if text in values:
            return text
        hint = did_you_mean(text, list(values))
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}: {hint}(choose from {', '.join(values)})")

    check.__name__ = what  # argparse names the type in its own messages
    check.values = values  # type: ignore[attr-defined]  # the words shell completion offers
    return check


def did_you_mean(text: str, known: list[str]) -> str:
    """``did you mean 'x'? `` naming the closest of ``known`` to ``text``, or nothing."""
    near = difflib.get_close_matches(text, known, n=1)
    return f"did you mean {near[0]!r}? " if near else ""


def _global_flags(p: argparse.ArgumentParser, json_only: bool = False, *, top: bool = False) -> None:
    """The flags every subcommand takes, before or after the subcommand's name (as ``kubectl``
    and ``az`` take theirs). They are on the top parser with their defaults and on each subcommand
    with none (``SUPPRESS``), so a flag given before the subcommand is not reset after it."""
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument("-o", "--output", type=choice("output", OUTPUTS), default="table" if top else default,
                   metavar="{" + ",".join(OUTPUTS) + "}",
                   help="table (default), wide (more columns) or json (the data, times in ISO 8601)")
    p.add_argument("--json", dest="output", action="store_const", const="json", default=default,
                   help="the same as -o json")
    if json_only:
        return
    g = p.add_argument_group("backend (one of)")
    g.add_argument("--storage", default=default,
                   help="sqlite:///PATH, azure or azure:CONNECTION (default: $REACTOR_STORAGE)")
    g.add_argument("--url", default=default, help="the app's API, https://APP.azurewebsites.net/api")
    g.add_argument("--key", default=default, help="function or host key for --url (default: $REACTOR_FUNCTION_KEY)")
    g.add_argument("--policy", type=Path, default=default, help="the app's policy file, for status with --storage "
                   "(default: $REACTOR_POLICY_FILE, else the policy.yaml of the checkout the CLI runs from)")


def _common(json_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    _global_flags(p, json_only)
    return p


def _limit(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_SCAN:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_SCAN}")
    return int(text)


def _rollout_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{24}", text):
        raise argparse.ArgumentTypeError("a rollout id is 24 hex digits (reactor rollouts lists them)")
    return text


def _record_key(text: str) -> str:
    from shared.journal import KEY_PATTERN

    if not KEY_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError("a record key as a command printed it (record command KEY)")
    return text


def add(sub: Any, name: str, summary: str, examples: str, parents: list[argparse.ArgumentParser],
        **kw: Any) -> argparse.ArgumentParser:
    """One subcommand: ``summary`` in the list of subcommands and atop its ``--help``, which ends
    with ``examples`` (command lines, as ``kubectl`` and ``az`` end theirs)."""
    description = summary[:1].upper() + summary[1:].replace("%%", "%") + "."
    return sub.add_parser(name, parents=parents, help=summary, description=description,
                          epilog="examples:\n" + examples.strip("\n"),
                          formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def parser() -> argparse.ArgumentParser:
    common = [_common()]
    top = argparse.ArgumentParser(prog="reactor", description=__doc__.split("\n\n")[0],
                                  epilog="exit codes: 0 ok, 1 needs attention or failed, 2 usage, 3 not found, "
                                  "4 backend unreachable, 5 --wait timed out, 6 refused",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"reactor {__version__}")
    _global_flags(top, top=True)
    sub = top.add_subparsers(dest="cmd", required=True, metavar="SUBCOMMAND")

    p = add(sub, "status", "per model and environment: serving, aliases, last rollout, last monitor verdict "
            "(exit 1 if any needs attention)", """
  reactor status
  reactor status --model taxi_fare -o json
  reactor --url https://APP.azurewebsites.net/api status   # the key from $REACTOR_FUNCTION_KEY""", common)
    p.add_argument("--model", help="only this model")

    p = add(sub, "rollouts", "rollouts, newest first", """
  reactor rollouts
  reactor rollouts --model taxi_fare --status failed --limit 10
  reactor rollouts -o wide""", common)
    p.add_argument("--model", help="only this model's endpoints")
    p.add_argument("--status", type=choice("status", ROLLOUT_STATUSES),
                   help=f"only rollouts with this status ({', '.join(ROLLOUT_STATUSES)})")
    p.add_argument("--limit", type=_limit, default=20, help="at most this many (default 20)")

    p = add(sub, "rollout", "one rollout: its timeline, analysis per step, its failure", """
  reactor rollout 5c80a9ff18e3698b96219eab
  reactor rollout 5c80a9ff18e3698b96219eab --model taxi_fare -o json""", common)
    p.add_argument("id", type=_rollout_id, help="the rollout id (24 hex digits)")
    p.add_argument("--model", help="look on this model's endpoints only")

    p = add(sub, "records", "events and commands with their outcomes, newest first", """
  reactor records --status rejected
  reactor records --kind command --limit 10 -o wide
  reactor records --kind rejections""", common)
    p.add_argument("--kind", type=choice("kind", RECORD_KINDS),
                   help="event, command, poison, or rejections: the counters and samples of refused requests")
    p.add_argument("--status", type=choice("status", RECORD_STATUSES), help=", ".join(RECORD_STATUSES))
    p.add_argument("--limit", type=_limit, default=50, help="at most this many (default 50)")

    p = add(sub, "monitor", "the latest monitor figures against their thresholds (exit 1 on drift or a failed "
            "check)", """
  reactor monitor
  reactor monitor --model taxi_fare --history 5""", common)
    p.add_argument("--model", help="only this model")
    p.add_argument("--history", type=_limit, default=1, help="decisions per environment, newest first (default 1)")

    p = add(sub, "policy", "the policy file", """
  reactor policy check policy.yaml""", [])
    psub = p.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    pc = add(psub, "check", "validate a policy file (exit 1 if invalid)", """
  reactor policy check policy.yaml
  reactor policy check policy.yaml --registry-uri databricks-uc -o json""", [_common(json_only=True)])
    pc.add_argument("file", type=Path)
    pc.add_argument("--registry-uri", help="the app's model registry, which decides whether aliases exist "
                    "(default: $MLFLOW_REGISTRY_URI, else $MLFLOW_TRACKING_URI, as the app reads it); given here, "
                    "the registry is also asked for the tracked versions' signatures, and a column the monitoring "
                    "names that a signature lacks is a warning (exit 0)")

    p = add(sub, "doctor", "read-only preflight of the workspace and storage the policy needs "
            "(exit 1 if a rollout would fail, 4 if the workspace is unusable)", """
  reactor doctor --policy policy.yaml --storage azure
  reactor doctor --storage azure --principal "$APP_CLIENT_ID" -o json""", common)
    p.add_argument("--principal", help="check this identity's privileges (the app's application id), not the caller's")

    for name in COMMANDS:
        _command_parser(sub, name, common)
    p = add(sub, "wait", "re-attach to a command sent before: follow its record to its outcome as --wait does", """
  reactor wait id:cli-3f2a9c0e --storage sqlite:///.local/demo/state.db
  reactor --url https://APP.azurewebsites.net/api wait id:cli-3f2a9c0e --timeout 3600""", common)
    p.add_argument("record", type=_record_key, help="the record key the command printed (record command KEY)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")

    p = add(sub, "completion", "print a shell completion script", """
  source <(reactor completion bash)   # in ~/.bashrc
  source <(reactor completion zsh)    # in ~/.zshrc""", [])
    p.add_argument("shell", type=choice("shell", SHELLS))
    for each in {id(q): q for q in [*sub.choices.values(), *psub.choices.values()]}.values():
        # A usage error found after parsing is told with the subcommand's own usage line.
        each.set_defaults(usage_of=each)
    return top


_HELP = {
    "deploy": ("roll a version out (--version, --alias, or the latest)", """
  reactor deploy taxi_fare prod --version 3 --wait
  reactor deploy taxi_fare prod --alias Champion
  reactor deploy taxi_fare prod --version 1 --no-hold   # an older version, without holding it"""),
    "promote": ("the next traffic step now (--full: straight to 100%%)", """
  reactor promote taxi_fare prod --reason "looks good"
  reactor promote taxi_fare prod --full --reason "enough evidence" --wait"""),
    "pause": ("hold the rollout where it is", """
  reactor pause taxi_fare prod --reason 'checking the latency dashboard'"""),
    "resume": ("go on from a pause", """
  reactor resume taxi_fare prod --wait"""),
    "abort": ("traffic back to the champion at once; the rollout ends aborted", """
  reactor abort taxi_fare prod --reason "latency alarm" --wait"""),
    "rollback": ("restore the previous config and aliases (after a finished rollout: undo it, and hold)", """
  reactor rollback taxi_fare prod --reason "wrong features" --wait
  reactor rollback taxi_fare prod --rollout 5c80a9ff18e3698b96219eab"""),
    "hold": ("pin the environment to a version until release", """
  reactor hold taxi_fare prod --version 2 --reason "v3 under investigation" --wait"""),
    "release": ("end the environment's hold; reconcile moves it again", """
  reactor release taxi_fare prod --reason "v3 fixed" --wait"""),
    "retrain": ("run the environment's retraining job", """
  reactor retrain taxi_fare prod --reason "new month of data" --wait"""),
    "check_drift": ("judge the monitoring windows now (or one --window-start/--window-end)", """
  reactor check-drift taxi_fare prod
  reactor check_drift taxi_fare prod --window-start 2026-12-01T00:00:00Z --window-end 2026-12-02T00:00:00Z"""),
}


def _command_parser(sub: Any, name: str, common: list[argparse.ArgumentParser]) -> None:
    text, examples = _HELP[name]
    p = add(sub, name, text, examples, common, aliases=[name.replace("_", "-")] if "_" in name else [])
    p.set_defaults(cmd=name)
    p.add_argument("model")
    p.add_argument("environment")
    if name == "deploy":
        p.add_argument("--version", help="a version number")
        p.add_argument("--alias", help="the version an alias points to")
        p.add_argument("--hold", action=argparse.BooleanOptionalAction, default=None,
                       help="pin the environment to this version until release (default: only a version older "
                       "than the serving champion)")
    if name == "hold":
        p.add_argument("--version", required=True, help="a version number")
    if name in STEERING:
        p.add_argument("--rollout", help="a rollout other than the endpoint's active one")
    if name in (*STEERING, "hold", "release", "retrain"):
        p.add_argument("--reason", required=name in ("hold", "retrain"), help="recorded with the command")
    if name == "promote":
        p.add_argument("--full", action="store_true", help="straight to 100%%")
    if name == "check_drift":
        p.add_argument("--window-start", help="ISO-8601 time with a zone")
        p.add_argument("--window-end", help="ISO-8601 time with a zone")
    p.add_argument("--id", help="idempotency key: the same id is acted on once (default: a new one)")
    p.add_argument("--wait", action="store_true", help="wait for the outcome: the rollout ended (deploy) or reached "
                   "the state asked for, printing each step (reactor wait RECORD re-attaches)")
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

    # As the app finds it (shared.settings), so the CLI answers alike from any folder.
    policy = args.policy or Path(os.environ.get("REACTOR_POLICY_FILE") or APP_ROOT / "policy.yaml")
    return StorageBackend(storage, policy)


def as_json(data: Any, indent: int | None = None) -> str:
    """The CLI's JSON: the data as the app's routes answer it, with times in ISO 8601 (render.iso_times)."""
    return json.dumps(render.iso_times(data), indent=indent, default=str)


def _print(out: TextIO, args: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    print(as_json(data, indent=2) if args.json else text(), file=out)


def _width(out: TextIO) -> int | None:
    """A terminal's width for tables to fit; None when piped (each row one line)."""
    return shutil.get_terminal_size().columns if out.isatty() else None


def _entries(backend: Backend, model: str | None) -> list[dict[str, Any]]:
    entries = backend.status()
    if model is None:
        return entries
    mine = [e for e in entries if e["model"] == model]
    if not mine:
        known = sorted({e["model"] for e in entries})
        hint = did_you_mean(model, known)
        raise NotFound(f"model {model!r} is not in the policy: {hint}(models: {', '.join(known)})")
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
    return ATTENTION if any(alerts(e) for e in entries) else OK


def _status_of(row: dict[str, Any]) -> str:
    return "paused" if row.get("paused") and row.get("status") == "running" else row.get("status", "")


def cmd_rollouts(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    endpoints = [e["endpoint"] for e in _entries(backend, args.model)] if args.model else [None]
    rows = [r for ep in endpoints
            for r in _pages(lambda t, ep=ep: backend.rollouts(ep, limit=1000, continuation=t), err)
            if args.status is None or args.status in (r.get("status"), _status_of(r))]
    rows = sorted(rows, key=lambda r: r.get("created_at", 0), reverse=True)[:args.limit]
    _print(out, args, rows, lambda: render.rollouts(rows, args.output == "wide", _width(out)))
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
    _print(out, args, rows, lambda: render.records(rows, args.output == "wide", _width(out)))
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
                      "decisions": rows or [], "retraining": e.get("retraining")})

    def text() -> str:
        lines = []
        for f in found:
            lines.append(f"{f['model']}/{f['environment']}  endpoint {f['endpoint']}")
            lines += [ln for d in f["decisions"] for ln in render.decision_lines(d, "  ")] or ["  no decision yet"]
            lines += render.retraining_lines(f["retraining"])
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
            print(as_json({"file": str(args.file), "valid": False, "error": str(exc), "problems": problems,
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
    for name in ("version", "alias", "rollout", "reason", "hold"):
        if getattr(args, name, None) is not None:
            cmd[name] = getattr(args, name)
    if getattr(args, "full", False):
        cmd["full"] = True
    if getattr(args, "window_start", None) or getattr(args, "window_end", None):
        cmd["window"] = {"start": args.window_start, "end": args.window_end}
    return cmd


def _entry(backend: Backend, model: str, environment: str) -> dict[str, Any]:
    for e in _entries(backend, model):
        if e["environment"] == environment:
            return e
    raise NotFound(f"model {model!r} has no environment {environment!r} in the policy")


def refusal(backend: Backend, cmd: dict[str, Any], entry: dict[str, Any], now: float) -> str | None:
    """Why the app would refuse ``cmd``, where the CLI can know it from the status summary
    (shared.overview): a steering command with no rollout in progress (handlers/steering.py), a
    ``retrain`` inside the cooldown of the last action (handlers/monitor.py); else None."""
    endpoint = entry["endpoint"]
    if cmd["command"] in NEEDS_A_ROLLOUT:
        if cmd.get("rollout"):
            try:
                row = backend.rollout(endpoint, cmd["rollout"])["rollout"]
            except NotFound:
                return f"no rollout {cmd['rollout']} on endpoint {endpoint}"
            if row["status"] in rollouts.TERMINAL:
                return (f"rollout {row['id']} (version {row.get('version')}) already ended {row['status']}: "
                        f"{cmd['command']} needs a rollout in progress")
        elif entry["rollout"] is None or entry["rollout"]["status"] in rollouts.TERMINAL:
            last = entry["rollout"]
            ended = f" (the last one, {last['id']} of version {last['version']}, ended {last['status']})" \
                if last else ""
            return f"no rollout in progress on endpoint {endpoint}{ended}"
    retraining = entry.get("retraining")
    if cmd["command"] == "retrain" and retraining and retraining["cooldown_until"] > now:
        return (f"cooldown: the last action ({retraining.get('action') or 'none'}) was {now - retraining['at']:.0f} s "
                f"ago; the next may run in {retraining['cooldown_until'] - now:.0f} s, at "
                f"{render.when(retraining['cooldown_until'])}")
    return None


def cmd_send(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO, body: bytes) -> int:
    cmd = json.loads(body)
    entry: dict[str, Any] | None = None
    if cmd["command"] in (*STEERING, "retrain") or args.wait:
        entry = _entry(backend, cmd["model"], cmd["environment"])
        why = refusal(backend, cmd, entry, time.time())
        if why:
            if args.json:
                print(as_json({"record": None, "command": cmd, "result": "refused", "reason": why}), file=out)
            print(f"reactor: refused, not sent: {why}", file=err)
            return REFUSED
    key = backend.send(body)
    if not args.json:
        print(f"sent {cmd['command']} {cmd['model']}/{cmd['environment']}: record command {key}", file=out)
    if not args.wait:
        if args.json:
            print(as_json({"record": key, "command": cmd}), file=out)
        return OK
    return _follow(backend, args, key, cmd, entry["endpoint"] if entry else None, out, err)


def cmd_wait(backend: Backend, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rec = backend.record("command", args.record)
    cmd = rec.get("command") or {}
    endpoint = None
    if cmd.get("model") and cmd.get("environment"):
        try:
            endpoint = _entry(backend, cmd["model"], cmd["environment"])["endpoint"]
        except NotFound:
            endpoint = None  # no longer in the policy: the record is the outcome
    return _follow(backend, args, args.record, cmd, endpoint, out, err)


def _reattach(args: argparse.Namespace, key: str) -> str:
    """The command that re-attaches to ``key`` with the same backend (never the key)."""
    where = (["--url", args.url] if args.url else
             [*(["--storage", args.storage] if args.storage else []),
              *(["--policy", str(args.policy)] if args.policy else [])])
    return " ".join(["reactor", "wait", key, *where])


def _follow(backend: Backend, args: argparse.Namespace, key: str, cmd: dict[str, Any], endpoint: str | None,
            out: TextIO, err: TextIO) -> int:
    from reactor.follow import follow

    got = follow(backend, key, cmd, endpoint, args.timeout, err if args.json else out)
    if args.json:
        print(as_json({"record": key, "command": cmd, "result": got.result, "outcome": got.text,
                       "final": got.record, "rollout": got.rollout}), file=out)
    name = cmd.get("command", "the command")
    if got.result == "timeout":
        print(f"reactor: {name}: {got.text} after {args.timeout:g} s; it goes on in the app. Re-attach with: "
              f"{_reattach(args, key)}", file=err)
        return TIMED_OUT
    if not args.json:
        print(f"{got.result if got.result != 'ok' else 'done'}: {got.text}", file=out)
    if got.result == "refused":
        print(f"reactor: {name} refused: {got.text}", file=err)
        return REFUSED
    return OK if got.result == "ok" else ATTENTION


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        rc = run(argv, out, err)
        out.flush()
        return rc
    except BrokenPipeError:
        # The reader stopped reading (`reactor records | head -1`): no message, and no second
        # error when Python flushes stdout at exit (Python docs, "signal: Note on SIGPIPE",
        # https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def run(argv: list[str] | None, out: TextIO, err: TextIO) -> int:
    p = parser()
    args = p.parse_args(argv)
    args.json = args.output == "json"
    if args.cmd == "completion":
        from reactor.completion import script

        print(script(p, args.shell), file=out, end="")
        return OK
    if args.cmd == "policy":
        return cmd_policy(args, out, err)
    if args.cmd == "doctor":
        from reactor import doctor

        return doctor.command(args, out, err)
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
                "monitor": cmd_monitor, "wait": cmd_wait}[args.cmd](backend, args, out, err)
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
    except BrokenPipeError:
        raise  # a reader gone is not a backend unreachable (main)
    except Exception as exc:
        if backend is not None and isinstance(exc, backend.transport_errors):
            from shared.redaction import redact

            # A storage error may quote the connection it failed on: never print a key.
            print(f"reactor: cannot reach the storage: {type(exc).__name__}: {redact(str(exc))}", file=err)
            return UNREACHABLE
        raise
