"""The repository stands on its own: its design is ``docs/architecture.md``, and no tracked file
points outside the repository for it (the research notes and the original design beside a clone
are not part of it; a fact cites its public source, the page's title and URL, instead).

Every citation of the architecture must resolve: a cited principle number names a numbered
principle of its "Principles" section, and a cited section name in quotes one of its headings.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = "docs/" + "architecture.md"

# Built by concatenation so that this file, which is tracked too, does not match itself.
OUTSIDE = ("../" + "shared", "/work/" + "shared", "shared/" + "reference/", "DESIGN" + ".md")

_PRINCIPLES_CITED = re.compile(re.escape(ARCHITECTURE) + r",?\s+principles?\s+(\d+(?:\s*(?:,|and)\s*\d+)*)")
_SECTION_CITED = re.compile(re.escape(ARCHITECTURE) + r',?\s+"([^"\n]+)"')


def _tracked_texts() -> dict[str, str]:
    """Every tracked file that is text, by its path."""
    paths = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    texts = {}
    for path in paths.decode().split("\0"):
        file = ROOT / path
        if not path or not file.is_file():
            continue
        try:
            texts[path] = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def _unescaped(text: str) -> str:
    # JSON files (policy.schema.json) carry docstrings with escaped quotes and newlines.
    return text.replace('\\"', '"').replace("\\n", "\n")


def _principles(architecture: str) -> set[int]:
    section = architecture.split("## Principles", 1)[1].split("\n## ", 1)[0]
    return {int(n) for n in re.findall(r"^(\d+)\. \*\*", section, flags=re.M)}


def _headings(architecture: str) -> set[str]:
    return {m.strip() for m in re.findall(r"^#{2,4} (.+)$", architecture, flags=re.M)}


def test_no_tracked_file_points_outside_the_repository() -> None:
    found = [f"{path}:{n}: {line.strip()}"
             for path, text in _tracked_texts().items()
             for n, line in enumerate(text.splitlines(), 1)
             if any(s in line for s in OUTSIDE)]
    assert not found, "cite docs/architecture.md or the public source instead:\n" + "\n".join(found)


def test_architecture_cites_its_numbered_principles_and_flows() -> None:
    text = (ROOT / ARCHITECTURE).read_text(encoding="utf-8")
    assert _principles(text) == set(range(1, 10))
    assert {"Registry webhook", "Registry watcher", "Queue commands", "Rollout",
            "The local workspace"} <= _headings(text)


def test_every_citation_of_the_architecture_resolves() -> None:
    text = (ROOT / ARCHITECTURE).read_text(encoding="utf-8")
    principles, headings = _principles(text), _headings(text)
    unresolved, cited = [], 0
    for path, body in _tracked_texts().items():
        body = _unescaped(body)
        for m in _PRINCIPLES_CITED.finditer(body):
            for n in re.findall(r"\d+", m.group(1)):
                cited += 1
                if int(n) not in principles:
                    unresolved.append(f"{path}: principle {n}")
        for m in _SECTION_CITED.finditer(body):
            cited += 1
            if m.group(1) not in headings:
                unresolved.append(f'{path}: "{m.group(1)}"')
    assert cited > 0, "no citation found: the patterns no longer match how the code cites"
    assert not unresolved, "cited in the code but not in docs/architecture.md:\n" + "\n".join(unresolved)


def test_a_citation_of_a_missing_principle_or_section_is_caught() -> None:
    """The checks above can fail: a made-up principle and section are reported."""
    text = (ROOT / ARCHITECTURE).read_text(encoding="utf-8")
    bad = f'see {ARCHITECTURE} principle 42 and {ARCHITECTURE} "No such flow"'
    principle = _PRINCIPLES_CITED.search(bad)
    section = _SECTION_CITED.search(bad)
    assert principle is not None and int(principle.group(1)) not in _principles(text)
    assert section is not None and section.group(1) not in _headings(text)
