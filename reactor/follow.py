"""``--wait`` and ``reactor wait RECORD``: follow a command to its outcome, not to its record
(README "Sending a command").

A command's journal record ends when the app has acted: a ``deploy`` that started a rollout ends
with it, but a steering command ends once the rollout row is changed, and a ``deploy`` of a version
already rolling out ends at once, joining that rollout. So after the record, the rollout is
followed until it reached what the command asked for (Argo Rollouts' ``kubectl argo rollouts
promote``/``abort``/``undo`` then ``status --watch``; Argo Rollouts, "Kubectl Plugin",
https://argoproj.github.io/argo-rollouts/features/kubectl-plugin/):

- ``deploy``: the rollout it started or joined ended (``done``, else it needs attention);
- ``pause``: paused; ``resume``: no longer paused;
- ``promote``: its traffic shift to the next step done (``--full`` or the last step: ``done``);
- ``abort``: ``aborted``; ``rollback``: ``rolled_back``;
- ``retrain`` and the others: the record (a retrain ends with its run). A ``retrain`` that
  launched nothing (cooldown, a run in flight) is refused, not ok.

Which rollout, and which step ``promote`` moved it to, is read from the record's outcome as
handlers/commands.py and handlers/steering.py word it. Progress prints each history entry of
the rollout with its own note (a note ends the step it names: reactor.render.timeline; a steered
or joined rollout from its latest entry on; a wait that found the same again once), each change
of state, and a countdown while baking, analysing or waiting for the endpoint.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from reactor import render
from reactor.backend import Backend, NotFound

POLL_SECONDS = 0.5
COUNTDOWN_EVERY = 10.0  # seconds between two countdown lines of one wait
_STOPPED = ("aborted", "rolled_back")
_ENDED = ("done", "failed", *_STOPPED, "superseded")
# What handlers/steering.py and handlers/commands.py write in a record's outcome.
_STEERED = re.compile(r"^rollout ([0-9a-f]{24}): ")
_ALREADY_APPLIED = re.compile(r"already applied to rollout ([0-9a-f]{24})")
_JOINED = re.compile(r"already rolling out \(([0-9a-f]{24})\)")
_TO_STEP = re.compile(r": to step (\d+) of \d+$")
_LAUNCHED_NOTHING = ("cooldown:", "run_in_flight:")


@dataclass(frozen=True)
class Outcome:
    """How a followed command ended: ``ok``, ``attention`` (failed, stopped, or another state
    than asked), ``refused`` (rejected by the app, or did nothing) or ``timeout``; the record and
    the rollout as last read, and the sentence that says it."""

    result: str
    text: str
    record: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None


class Follower:
    """Polls the backend, printing each change once to ``out``."""

    def __init__(self, backend: Backend, out: TextIO, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend, self.out, self.clock = backend, out, clock
        self.t0 = clock()
        self.deadline = self.t0 + timeout
        self.seen: dict[str, Any] = {}

    def say(self, what: str, state: Any, text: str) -> None:
        if self.seen.get(what) != state:
            self.seen[what] = state
            print(f"[{self.clock() - self.t0:6.1f}s] {text}", file=self.out, flush=True)

    def _tick(self) -> bool:
        """Wait one poll; False once the time is up."""
        if self.clock() > self.deadline:
            return False
        time.sleep(POLL_SECONDS)
        return True

    def record(self, key: str) -> dict[str, Any] | None:
        """The command's record once it is terminal (None: the time ran out), printing its changes
        and those of the rollouts it started."""
        from shared.journal import TERMINAL

        while True:
            try:
                rec: dict[str, Any] | None = self.backend.record("command", key)
            except NotFound:
                rec = None
            if rec is None:
                self.say("record", "queued", "queued: waiting for the app to take it")
            else:
                # The rollouts first: the record ends after the rollout it started, and says so last.
                for endpoint, rid in rec.get("started") or []:
                    self.show(self.backend.rollout(endpoint, rid)["rollout"])
                detail = _detail(rec)
                self.say("record", (rec["status"], detail),
                         f"record {rec['status']}" + (f": {detail}" if detail else ""))
                if rec["status"] in TERMINAL:
                    return rec
            if not self._tick():
                return None

    def rollout(self, endpoint: str, rid: str, reached: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The rollout once ``reached`` holds or it ended (None: the time ran out)."""
        while True:
            row = self.backend.rollout(endpoint, rid)["rollout"]
            # A rollout steered or joined is shown from its latest entry (the command's own, for
            # a steering command), not from its beginning.
            self.seen.setdefault(f"{rid}:history", max(0, len(row.get("history") or []) - 1))
            self.show(row)
            if reached(row) or row["status"] in _ENDED:
                return row
            if not self._tick():
                return None

    def show(self, row: dict[str, Any]) -> None:
        """Print what is new in a rollout: its history entries, its state, a countdown."""
        rid, version = row["id"], row.get("version")
        history = row.get("history") or []
        for i in range(self.seen.get(f"{rid}:history", 0), len(history)):
            h = history[i]
            if i and (h["step"], h["note"]) == (history[i - 1]["step"], history[i - 1]["note"]):
                continue  # one more look at a wait that found the same
            self.say(f"{rid}:h{i}", True, render.progress(rid, version, f"{h['step']}: {h['note']}"))
        self.seen[f"{rid}:history"] = len(history)
        at = f" at {row['weight']}%" if row.get("weight") and row["status"] != "done" else ""
        paused = f", paused: {row['paused'].get('reason')}" if row.get("paused") else ""
        self.say(rid, (row["status"], row["step"], row.get("weight"), bool(paused)),
                 render.progress(rid, version, f"{row['status']}, now {row['step']}{at}{paused}"))
        left = _countdown(row, time.time())
        if left:
            bucket = (row["step"], math.ceil(left[0] / COUNTDOWN_EVERY))
            self.say(f"{rid}:countdown", bucket, render.progress(rid, version, left[1]))


def _countdown(row: dict[str, Any], now: float) -> tuple[float, str] | None:
    """While baking: the time left; while waiting for the endpoint or for traffic to analyse:
    how long it has waited, or when the next look is due."""
    if row["status"] != "running" or row.get("paused"):
        return None
    step = row["step"]
    if step == "bake" and row.get("bake_until"):
        left = max(0.0, float(row["bake_until"]) - now)
        return left, f"baking at {row.get('weight')}%: {left:.0f} s left"
    if step in ("wait_deploy", "wait_shift", "wait_rollback", "wait_retire") and row.get("wait_started"):
        waited = max(0.0, now - float(row["wait_started"]))
        return waited, f"waiting for the endpoint at {step}: {waited:.0f} s so far"
    if step == "analyze" and row.get("due_at"):
        left = max(0.0, float(row["due_at"]) - now)
        return left, f"analysing at {row.get('weight')}%, waiting for traffic: next look in {left:.0f} s"
    return None


def _detail(rec: dict[str, Any]) -> str:
    outcome = rec.get("outcome")
    return rec.get("reason") or ("; ".join(outcome) if isinstance(outcome, list) else outcome or "")


def _outcome_lines(rec: dict[str, Any]) -> list[str]:
    outcome = rec.get("outcome")
    return outcome if isinstance(outcome, list) else [outcome] if outcome else []


def target(command: dict[str, Any], rec: dict[str, Any]) -> tuple[str, Callable[[dict[str, Any]], bool]] | None:
    """The rollout a finished record points at and what it must reach, or None (the record is
    the outcome)."""
    name = command.get("command")
    for line in _outcome_lines(rec):
        if name == "deploy":
            found = _JOINED.search(line)
            if found:
                return found.group(1), lambda row: row["status"] in _ENDED
        elif name in ("pause", "resume", "promote", "abort", "rollback"):
            found = _STEERED.match(line) or _ALREADY_APPLIED.search(line)
            if found:
                return found.group(1), _reached(name, line, command)
    return None


def _reached(name: str, line: str, command: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    if name == "pause":
        return lambda row: bool(row.get("paused"))
    if name == "resume":
        return lambda row: not row.get("paused")
    if name == "abort":
        return lambda row: row["status"] == "aborted"
    if name == "rollback":
        return lambda row: row["status"] == "rolled_back"
    step = _TO_STEP.search(line)
    if command.get("full") or step is None:
        return lambda row: row["status"] == "done"
    stage = int(step.group(1)) - 1
    return lambda row: row["status"] == "done" or (row.get("stage", 0) >= stage
                                                   and row["step"] not in ("shift", "wait_shift"))


def wanted(name: str) -> str:
    """What the command waits for, in words."""
    return {"deploy": "end", "pause": "be paused", "resume": "go on", "promote": "take its next step",
            "abort": "end aborted", "rollback": "end rolled_back"}.get(name, "end")


def follow(backend: Backend, key: str, command: dict[str, Any], endpoint: str | None, timeout: float,
           out: TextIO) -> Outcome:
    """Follow the command recorded under ``key`` to its outcome (module docstring); ``endpoint``
    is the environment's, where the rollout it steered or joined is."""
    f = Follower(backend, out, timeout)
    rec = f.record(key)
    if rec is None:
        return Outcome("timeout", "the command has not ended")
    name, detail = command.get("command", ""), _detail(rec)
    if rec["status"] == "rejected":
        return Outcome("refused", f"refused by the app: {detail}", rec)
    if rec["status"] != "done" and rec["status"] != "ignored":
        return Outcome("attention", f"ended {rec['status']}: {detail}", rec)
    if name == "retrain" and any(line.startswith(_LAUNCHED_NOTHING) for line in _outcome_lines(rec)):
        return Outcome("refused", f"launched nothing: {detail}", rec)
    aim = target(command, rec)
    if aim is None or endpoint is None:
        started = rec.get("started") or []
        return Outcome("ok", (f"rollout {started[-1][1]}: " if started else "") + detail, rec)
    rid, reached = aim
    row = f.rollout(endpoint, rid, reached)
    if row is None:
        return Outcome("timeout", f"rollout {rid} did not {wanted(name)} yet", rec)
    state = row["status"] + (f" ({row['reason']})" if row.get("reason") and row["status"] != "done" else "")
    if reached(row) and (name != "deploy" or row["status"] == "done"):
        return Outcome("ok", f"rollout {rid}: {state}, at {row['step']}", rec, row)
    short = "" if name == "deploy" else f" before it could {wanted(name)}"
    return Outcome("attention", f"rollout {rid} ended {state}{short}", rec, row)
