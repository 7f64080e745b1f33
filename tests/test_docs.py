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


# The research notes a previous design was written from, by file name: a citation of one (with or
# without a section) only makes sense beside that design, so a fact cites its public page instead.
_NOTES = re.compile(r"\b(?:databricks-api|azure-functions|mlflow-webhooks|monitoring|progressive-delivery)\.md\b")
# A section sign cites a section of a public document named on the same line: an RFC, a quoted title,
# or (docs/deploy.md only) one of that file's own numbered sections. Anything else ("reference" and a
# section number, or a bare section number) is a key into the notes.
SS = "\u00a7"  # the section sign, escaped so that this file does not match itself
_SECTION = re.compile(SS + r"\s*\d")
_SECTION_OF_PUBLIC = re.compile(r'(?:RFC \d+|"[^"\n]+",?) ' + SS + r"\s*\d")


def _numbered_sections(markdown: str) -> set[str]:
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\. ", markdown, flags=re.M)) | set(
        re.findall(r"^#{2,4} (\d+\.\d+) ", markdown, flags=re.M))


def _note_citations(path: str, text: str, own: set[str]) -> list[str]:
    found = []
    for n, line in enumerate(_unescaped(text).splitlines(), 1):
        if _NOTES.search(line):
            found.append(f"{path}:{n}: {line.strip()}")
            continue
        public = len(_SECTION_OF_PUBLIC.findall(line))
        own_cited = sum(1 for m in re.finditer(SS + r"\s*(\d+(?:\.\d+)*)", line) if m.group(1) in own)
        if len(_SECTION.findall(line)) > public + own_cited:
            found.append(f"{path}:{n}: {line.strip()}")
    return found


def test_no_tracked_file_cites_the_research_notes() -> None:
    deploy = (ROOT / "docs/deploy.md").read_text(encoding="utf-8")
    found = [hit for path, text in _tracked_texts().items()
             for hit in _note_citations(path, text, _numbered_sections(deploy) if path == "docs/deploy.md" else set())]
    assert not found, "cite the fact's public page (title and URL) instead:\n" + "\n".join(found)


def test_a_citation_of_the_notes_is_caught() -> None:
    """The check above can fail: a note by name, a bare section and a section with no document."""
    cited = (f"(reference databricks-api{'.md'} {SS}1.7)\n(reference {SS}1.4)\nas in ({SS}6.2)\n"
             f'RFC 9110 {SS}5.3 and "Statistical Power Analysis", {SS}6.2\n')
    assert [hit.split(":")[1] for hit in _note_citations("x.py", cited, set())] == ["1", "2", "3"]
    own = _note_citations("docs/deploy.md", f"see {SS}4 and {SS}6.1\nsee {SS}13\n", {"4", "6.1"})
    assert own == [f"docs/deploy.md:2: see {SS}13"]
