"""``reactor completion bash|zsh``: a shell completion script made from the CLI's own parser, so it
knows every subcommand, flag and choice there is, as ``kubectl completion`` prints one (Kubernetes,
"kubectl completion", https://kubernetes.io/docs/reference/kubectl/generated/kubectl_completion/).

Bash reads it with ``complete -F`` (GNU Bash manual, "Programmable Completion Builtins",
https://www.gnu.org/software/bash/manual/html_node/Programmable-Completion-Builtins.html); zsh
reads the same script through its ``bashcompinit`` emulation (zsh manual, "Completion System",
https://zsh.sourceforge.io/Doc/Release/Completion-System.html).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from pathlib import Path

SHELLS = ("bash", "zsh")


def script(top: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``top`` for ``shell`` (one of SHELLS)."""
    parsers = dict(_walk(top, ""))
    valued = sorted({o for p in parsers.values() for a in p._actions if a.option_strings and a.nargs != 0
                     for o in a.option_strings})
    cases = []
    # The longest path first: "policy check" before "policy".
    for path, p in sorted(parsers.items(), key=lambda kv: -len(kv[0].split())):
        pattern = '""' if not path else f"{_glob(path)}|{_glob(path)}\\ *"
        prev = [f"                {'|'.join(a.option_strings)}) {_reply(a)}; return ;;"
                for a in p._actions if a.option_strings and a.nargs != 0]
        words = [*_children(p), *(v for a in p._actions if not a.option_strings for v in _values(a) or ()),
                 *(o for a in p._actions for o in a.option_strings)]
        cases.append(f"        {pattern})\n            case \"$prev\" in\n" + "\n".join(prev)
                     + f"\n            esac\n            words={shlex.quote(' '.join(words))} ;;")
    body = f"""_reactor() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path="" words="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            {'|'.join(valued)}) ((i++)) ;;
            -*) ;;
            *) path="${{path:+$path }}${{COMP_WORDS[i]}}" ;;
        esac
    done
    case "$path" in
{chr(10).join(cases)}
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -F _reactor reactor
"""
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body


def _walk(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, child in a.choices.items():
                yield from _walk(child, f"{path} {name}".strip())


def _children(p: argparse.ArgumentParser) -> list[str]:
    return [name for a in p._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]


def _values(a: argparse.Action) -> tuple[str, ...] | None:
    """The words an argument takes: its choices (reactor.cli.choice keeps them on the type)."""
    return getattr(a.type, "values", None) or (tuple(a.choices) if a.choices and not isinstance(
        a, argparse._SubParsersAction) else None)


def _reply(a: argparse.Action) -> str:
    """What follows an option: one of its choices, a file for a path, else nothing to offer."""
    values = _values(a)
    if values:
        return f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(values))} -- "$cur"))'
    return 'COMPREPLY=($(compgen -f -- "$cur"))' if a.type is Path else "COMPREPLY=()"


def _glob(path: str) -> str:
    return path.replace(" ", "\\ ")
