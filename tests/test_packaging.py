"""What a zip deployment of this repository puts in the package, given ``.funcignore``.

Azure/functions-action (``respect-funcignore: true``) deletes from the checked-out folder every
path that the npm ``ignore`` package, a gitignore implementation, says the ``.funcignore`` rules
ignore, then zips what is left; Core Tools' ``func azure functionapp publish`` reads the same file
with gitignore syntax. So the package is: the files of a fresh checkout (the working tree less
what the root ``.gitignore`` ignores, plus ``.git/``), less what ``.funcignore`` ignores.

:class:`IgnoreRules` implements gitignore pattern syntax (git's gitignore documentation, "PATTERN
FORMAT"): comments and blank lines, ``!`` negation, a trailing ``/`` for directories only, a
leading or middle ``/`` anchoring the pattern to the folder of the file, ``*``, ``?``, ``[...]``,
and ``**/``, ``/**`` and ``/**/``; a path inside an ignored directory is ignored, whatever later
rules say. One test compares it with git's own implementation on this repository's files.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool


def _glob_to_regex(glob: str) -> str:
    """The regular expression of one gitignore glob, ``/``-separated, without its anchoring."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i) and (i == 0 or glob[i - 1] == "/"):
            out.append("(?:.*/)?")  # leading **/ or a middle /**/: zero or more directories
            i += 3
        elif glob.startswith("**", i) and i + 2 == n and (i == 0 or glob[i - 1] == "/"):
            out.append(".*")  # trailing /**: everything inside
            i += 2
        elif c == "*":
            while i < n and glob[i] == "*":  # other consecutive asterisks are a plain *
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = glob.find("]", i + 2 if glob.startswith("[!", i) or glob.startswith("[^", i) else i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = glob[i + 1:end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class IgnoreRules:
    """The rules of one gitignore-syntax file that sits at the root of the tree it applies to."""

    def __init__(self, text: str) -> None:
        self.rules: list[_Rule] = []
        for raw in text.splitlines():
            line = raw.rstrip("\r")
            line = re.sub(r"(?<!\\)\s+$", "", line)  # trailing spaces unless escaped
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            if negated or line.startswith(("\\!", "\\#")):  # "\\!" and "\\#" escape a leading ! or #
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            body = _glob_to_regex(line.lstrip("/"))
            prefix = "" if anchored else "(?:.*/)?"
            self.rules.append(_Rule(re.compile(f"^{prefix}{body}$"), negated, dir_only))

    def ignores(self, rel: str, is_dir: bool) -> bool:
        """Whether the last rule matching ``rel`` (POSIX, relative to the root) ignores it.

        Parent directories are the caller's business: walk top-down and do not enter an ignored
        directory (git cannot re-include a path whose directory is excluded)."""
        verdict = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(rel):
                verdict = not rule.negated
        return verdict


def walk(root: Path, *rule_sets: IgnoreRules, keep_git: bool = False) -> list[str]:
    """Every file under ``root`` that no rule set ignores, as sorted POSIX paths; an ignored
    directory is not entered. ``.git/`` is skipped unless ``keep_git``."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        dirs[:] = sorted(d for d in dirs
                         if (keep_git or prefix + d != ".git")
                         and not any(r.ignores(prefix + d, True) for r in rule_sets))
        found.extend(prefix + f for f in files if not any(r.ignores(prefix + f, False) for r in rule_sets))
    return sorted(found)


def _rules(name: str) -> IgnoreRules:
    return IgnoreRules((ROOT / name).read_text())


def checkout_files() -> list[str]:
    """The files of a fresh checkout: the working tree less what the root .gitignore ignores
    (a developer's .venv, caches and local state), with the .git folder a checkout has."""
    return walk(ROOT, _rules(".gitignore"), keep_git=True)


def package_files() -> list[str]:
    """The checkout less what .funcignore ignores: what the zip deployment uploads."""
    return walk(ROOT, _rules(".gitignore"), _rules(".funcignore"), keep_git=True)


def test_package_holds_the_app_and_nothing_else():
    files = package_files()
    assert files, "the package is empty"
    names = set(files)
    for required in ("function_app.py", "host.json", "requirements.txt", "policy.yaml"):
        assert required in names, f"{required} is not in the package"
    for package in ("shared", "handlers", "triggers"):
        assert f"{package}/__init__.py" in names, f"{package}/ is not in the package"

    # Everything of the app's own packages that a checkout has goes in (no .funcignore rule hits them).
    checkout = checkout_files()
    app_code = [f for f in checkout if f.split("/")[0] in ("shared", "handlers", "triggers") and f.endswith(".py")]
    assert app_code and not sorted(set(app_code) - names), sorted(set(app_code) - names)

    # Nothing of the local stack, tests, benchmarks, docs, infrastructure or tooling goes in.
    for folder in ("local", "reactor", "tests", "bench", "docs", "infra", ".venv", ".local", ".git", ".github", ".ci",
                   ".hypothesis", ".pytest_cache", ".ruff_cache"):
        leaked = [f for f in files if f.split("/")[0] == folder]
        assert not leaked, f"{folder}/ leaks into the package: {leaked[:5]}"
    for name in ("dev", "requirements-dev.txt", "requirements-cli.txt", ".funcignore", ".gitignore"):
        assert name not in names, f"{name} leaks into the package"
    assert not [f for f in files if "__pycache__/" in f or f.endswith(".pyc") or f.endswith("local.settings.json")]


def test_ignore_rules_follow_gitignore_syntax():
    rules = IgnoreRules("\n".join([
        "# a comment",
        "/dev",              # anchored: only at the root
        "/local/",           # anchored, directories only
        "__pycache__/",      # any level, directories only
        "*.pyc",             # any level
        ".git*",
        "docs/**/draft.md",  # a middle /**/
        "build/**",          # everything inside build/
        "*.log",
        "!keep.log",         # negation of an earlier rule
        "\\#hash",           # an escaped leading #
    ]))
    ignored = {
        ("dev", False), ("local", True), ("a/__pycache__", True), ("x.pyc", False), ("a/b/x.pyc", False),
        (".git", True), (".github", True), (".gitignore", False), ("docs/draft.md", False),
        ("docs/a/b/draft.md", False), ("build/x", False), ("build/a/b", True), ("a/x.log", False), ("#hash", False),
    }
    kept = {
        ("shared/dev", False), ("shared/local", True), ("local", False), ("a/__pycache__", False),
        ("x.pyc.txt", False), ("keep.log", False), ("a/keep.log", False), ("build", True), ("notes/draft.md", False),
    }
    for rel, is_dir in ignored:
        assert rules.ignores(rel, is_dir), f"{rel} (dir={is_dir}) should be ignored"
    for rel, is_dir in kept:
        assert not rules.ignores(rel, is_dir), f"{rel} (dir={is_dir}) should be kept"


def test_ignore_rules_agree_with_git(tmp_path):
    """The same verdicts as git's gitignore implementation, on this repository's checkout: a copy
    of its file names (empty files) with .funcignore as the .gitignore of a new repository."""
    checkout = [f for f in checkout_files() if not f.startswith(".git/")]
    for rel in checkout:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (tmp_path / ".gitignore").write_text((ROOT / ".funcignore").read_text())
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    listed = subprocess.run(["git", "-C", str(tmp_path), "ls-files", "--others", "--exclude-standard", "-z"],
                            check=True, capture_output=True, env=env).stdout.decode()
    by_git = sorted(p for p in listed.split("\0") if p)
    ours = walk(tmp_path, IgnoreRules((ROOT / ".funcignore").read_text()))
    assert ours == by_git
