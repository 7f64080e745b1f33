"""The CLI's conventions without a stack (reactor/cli.py, reactor/render.py, reactor/completion.py):
the parser (global flags on either side of the subcommand, choices with did-you-mean, examples in
every ``--help``, ``--version``), the tables (fit a terminal, never cut a key fact), ISO 8601 times
in text and JSON, the exit code's view of an operator's own abort, shell completion that bash runs,
and a closed pipe ending quietly. tests/test_cli.py drives the same through the real stack."""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor import __version__, render
from reactor.cli import BROKEN_PIPE, main, parser
from reactor.completion import _walk
from shared.overview import alerts, attention

ROOT = Path(__file__).resolve().parent.parent
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ID = "5c80a9ff18e3698b96219eab"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(list(argv), out, err)
    return rc, out.getvalue(), err.getvalue()


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv), io.StringIO(), io.StringIO())
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"reactor {__version__}\n"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "reactor.__version__" }' in pyproject and 'reactor = "reactor.cli:main"' in pyproject


@pytest.mark.parametrize("argv", [
    ["--storage", "sqlite:///s.db", "--policy", "p.yaml", "-o", "json", "status", "--model", "m"],
    ["status", "--model", "m", "--storage", "sqlite:///s.db", "--policy", "p.yaml", "-o", "json"],
    ["--storage", "sqlite:///s.db", "status", "--json", "--policy", "p.yaml", "--model", "m"],
    ["--json", "--policy", "p.yaml", "status", "--model", "m", "--storage", "sqlite:///s.db"],
])
def test_global_flags_are_taken_before_or_after_the_subcommand(argv):
    args = parser().parse_args(argv)
    assert (args.cmd, args.model, args.storage, args.policy, args.output) == (
        "status", "m", "sqlite:///s.db", Path("p.yaml"), "json")


def test_the_output_defaults_to_a_table_and_the_last_flag_wins():
    assert parser().parse_args(["rollouts"]).output == "table"
    assert parser().parse_args(["-o", "json", "rollouts", "-o", "wide"]).output == "wide"
    assert parser().parse_args(["deploy", "m", "prod", "--version", "3", "--json"]).version == "3"


@pytest.mark.parametrize(("argv", "said"), [
    (["records", "--status", "faild"], "argument --status: invalid status 'faild': did you mean 'failed'?"),
    (["records", "--kind", "comand"], "argument --kind: invalid kind 'comand': did you mean 'command'?"),
    (["rollouts", "--status", "rolledback"], "invalid status 'rolledback': did you mean 'rolled_back'?"),
    (["-o", "yaml", "status"], "argument -o/--output: invalid output 'yaml': (choose from table, wide, json)"),
    (["completion", "fsh"], "argument shell: invalid shell 'fsh'"),
])
def test_a_misspelt_choice_is_a_usage_error_naming_the_closest(capsys, argv, said):
    err = usage_error(capsys, *argv)
    assert said in err and "Traceback" not in err
    assert err.startswith(f"usage: reactor {argv[0]}" if not argv[0].startswith("-") else "usage: reactor ")


def test_every_subcommand_has_examples_in_its_help():
    subcommands = [(path, p) for path, p in _walk(parser(), "") if path]
    assert {"status", "rollouts", "records", "policy check", "deploy", "check_drift", "completion"} <= {
        path for path, _ in subcommands}
    for path, p in subcommands:
        assert p.epilog and p.epilog.startswith("examples:\n  "), path
        assert p.formatter_class is argparse.RawDescriptionHelpFormatter, path  # the examples keep their lines
        for line in p.epilog.splitlines()[1:]:
            assert "reactor " in line, path
            # Each example parses: it is a real command line.
            words = [w.strip("'\"") for w in re.findall(r"'[^']*'|\"[^\"]*\"|\S+", line.split("  #")[0])][1:]
            if words[0] == "<(reactor":
                continue
            parser().parse_args(words)


def test_text_times_are_iso_8601_with_their_zone():
    assert render.when(1_790_000_000.0) == "2026-09-21T14:13:20Z"
    assert render.when(None) == "-"


def test_json_times_are_iso_and_other_numbers_stay_numbers():
    data = [{"created_at": 1_790_000_000.0, "weight": 30, "finished_at": None, "paused": False,
             "history": [{"at": 1_790_000_010, "step": "bake"}],
             "analyses": [{"window": [1_790_000_000.0, 1_790_000_060.0], "metrics": {"x": {"value": 0.5}}}],
             "monitor": {"window": {"start": 1_790_000_000.0, "end": 1_790_000_600.0}, "rows": 200}}]
    got = render.iso_times(data)
    assert got == [{"created_at": "2026-09-21T14:13:20Z", "weight": 30, "finished_at": None, "paused": False,
                    "history": [{"at": "2026-09-21T14:13:30Z", "step": "bake"}],
                    "analyses": [{"window": ["2026-09-21T14:13:20Z", "2026-09-21T14:14:20Z"],
                                  "metrics": {"x": {"value": 0.5}}}],
                    "monitor": {"window": {"start": "2026-09-21T14:13:20Z", "end": "2026-09-21T14:23:20Z"},
                                "rows": 200}}]


def _rollout(reason: str) -> dict:
    return {"id": ID, "model": "taxi_fare", "environment": "prod", "version": "12", "status": "failed",
            "step": "end", "created_at": 1_790_000_000.0, "finished_at": 1_790_000_200.0, "reason": reason,
            "weight": 30, "champion": "11"}


@given(reason=st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1,
                      max_size=400).filter(str.strip),
       width=st.integers(min_value=20, max_value=240), wide=st.booleans())
def test_a_table_never_cuts_a_key_fact_nor_the_reason(reason, width, wide):
    text = render.rollouts([_rollout(reason)], wide=wide, width=width)
    lines = text.splitlines()
    header, first = lines[0], lines[1]
    assert header.startswith("ROLLOUT ") and header.split()[-1] == "REASON"
    for fact in (ID, "taxi_fare/prod", "12", "failed", "end", "2026-09-21T14:13:20Z"):
        assert f" {fact} " in f" {first} ", (fact, first)
    # The reason, wrapped or not, is all there (only the spaces where it wrapped differ).
    column = header.index("REASON")
    wrapped = "".join(line[column:] for line in lines[1:])
    assert "".join(reason.split()) == "".join(wrapped.split())


def test_a_table_fits_the_terminal_and_piped_keeps_a_row_on_one_line():
    reason = "aborted by an operator: latency alarm " * 6
    fitted = render.rollouts([_rollout(reason)], width=120).splitlines()
    assert len(fitted) > 2 and all(len(line) <= 120 for line in fitted)
    piped = render.rollouts([_rollout(reason)]).splitlines()
    assert len(piped) == 2 and piped[1].endswith(reason.strip())


def test_records_print_whole_event_kinds_and_outcomes_without_python_lists():
    row = {"kind": "event", "status": "done", "received_at": 1_790_000_000.0, "key": "k" * 40,
           "event": {"kind": "model_version_alias_created", "version": "2", "model": "m"},
           "outcome": ["rollout a started", "[bold]kept[/bold] as written"]}
    text = render.records([row], width=80)
    assert "model_version_alias_created v2" in text and "k" * 40 in text
    assert "rollout a started; [bold]kept[/bold] as written" in " ".join(text.split())
    assert "['" not in text
    header, line = render.records([row], wide=True).splitlines()
    assert header.split()[5:7] == ["MODEL/ENV", "UPDATED"] and line.split()[6:8] == ["m", "-"]  # WHAT is two words


def test_an_operators_own_abort_is_noted_but_calls_for_no_one():
    stopped = {"rollout": {"id": ID, "version": "3", "status": "aborted", "reason": "aborted by an operator: x",
                           "paused": None}, "monitor": None}
    assert attention(stopped) == ["the last rollout (version 3) ended aborted: aborted by an operator: x"]
    assert alerts(stopped) == []
    failed = {**stopped, "rollout": {**stopped["rollout"], "status": "failed", "reason": "analysis Failed"}}
    assert alerts(failed) == attention(failed) != []
    paused = {**stopped, "rollout": {**stopped["rollout"], "status": "running", "paused": "analysis Inconclusive"}}
    assert alerts(paused) == attention(paused) != []
    drifting = {**stopped, "monitor": {"verdict": "violation", "version": "2", "reason": "psi"}}
    assert alerts(drifting) == ["monitor: version 2 violation: psi"]


def test_bash_completes_subcommands_flags_and_choices(tmp_path):
    rc, script, _ = run("completion", "bash")
    assert rc == 0 and "complete -F _reactor reactor" in script
    (tmp_path / "c.bash").write_text(script)
    probe = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _reactor; echo "${COMPREPLY[*]}"'

    def complete(*words: str) -> str:
        got = subprocess.run(["bash", "-c", probe, "bash", str(tmp_path / "c.bash"), "reactor", *words],
                             capture_output=True, text=True, timeout=30, check=True)
        return got.stdout.strip()

    assert complete("ro") == "rollouts rollout rollback"
    assert complete("records", "--status", "f") == "failed"
    assert complete("--storage", "sqlite:///x.db", "records", "--kind", "") == "event command poison rejections"
    assert complete("rollouts", "-o", "") == "table wide json"
    assert complete("policy", "c") == "check"
    assert complete("check-drift", "m", "prod", "--window-") == "--window-start --window-end"
    rc, zsh, _ = run("completion", "zsh")
    assert rc == 0 and zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n") and zsh.endswith(script)


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``reactor … | head -1`` once head has gone: exit 141 as a shell reports SIGPIPE, nothing on
    stderr. The pipe's read end is closed before the CLI writes, so the write always fails."""
    r, w = os.pipe()
    os.close(r)
    got = subprocess.run([sys.executable, "-m", "reactor", "completion", "bash"], stdout=w, stderr=subprocess.PIPE,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    os.close(w)
    assert (got.returncode, got.stderr) == (BROKEN_PIPE, b"")
