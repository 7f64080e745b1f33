"""The README serves a newcomer first: what the project is and the two commands on its first
screen, a table of contents that matches its headings, the demo as a numbered list, the operators'
CLI early, and no path that a clone of the repository does not have.

Anchors follow GitHub's heading links (GitHub Docs, "Basic writing and formatting syntax",
"Section links", https://docs.github.com/en/get-started/writing-on-github/getting-started-with-writing-and-formatting-on-github/basic-writing-and-formatting-syntax#section-links):
lower case, spaces to hyphens, other punctuation dropped.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRST_SCREEN = 25  # lines

# Paths the README names that a clone does not have until a command makes them: .venv (./dev),
# what the demo writes under .local/ and the settings file a person writes for the host (the README
# says so).
MADE_LATER = (".venv/", ".local/", "local.settings.json")


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"(?ms)^## (.+?)\n(.*?)(?=^## |\Z)", text)}


def _contents(text: str) -> list[tuple[str, str]]:
    return re.findall(r"(?m)^- \[(.+)\]\(#([^)]+)\)$", _sections(text)["Contents"])


def test_the_first_screen_says_what_it_is_and_gives_the_two_commands() -> None:
    first = "\n".join(_readme().splitlines()[:FIRST_SCREEN])
    assert "Azure Functions" in first and "Databricks Model Serving" in first
    assert re.search(r"(?m)^\./dev demo\b", first) and re.search(r"(?m)^\./dev test\b", first)


def test_the_table_of_contents_lists_every_heading_in_order_with_its_anchor() -> None:
    text = _readme()
    headings = [h for h in re.findall(r"(?m)^## (.+)$", text) if h != "Contents"]
    assert _contents(text) == [(h, _anchor(h)) for h in headings]


def test_an_anchor_drops_punctuation_as_github_does() -> None:
    assert _anchor("Try it yourself: `./dev up`") == "try-it-yourself-dev-up"
    assert _anchor("The operators' CLI") == "the-operators-cli"
    assert _anchor("Progressive delivery: direct, canary, A/B") == "progressive-delivery-direct-canary-ab"


def test_a_contents_entry_without_its_heading_is_caught() -> None:
    text = _readme().replace("\n## Layout\n", "\n## The layout\n")
    headings = [h for h in re.findall(r"(?m)^## (.+)$", text) if h != "Contents"]
    assert _contents(text) != [(h, _anchor(h)) for h in headings]


def test_the_demo_is_a_numbered_list_and_the_cli_comes_early() -> None:
    text = _readme()
    demo = _sections(text)["The demo, step by step"]
    steps = re.findall(r"(?m)^(\d+)\. ", demo)
    assert steps == [str(n) for n in range(1, len(steps) + 1)] and len(steps) >= 5
    headings = re.findall(r"(?m)^## (.+)$", text)
    assert headings.index("The operators' CLI") <= 4, headings
    assert "./dev up" in _sections(text)["Try it yourself: `./dev up`"]


def test_every_repository_path_the_readme_names_is_in_a_clone() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    present = set(tracked) | {str(Path(p).parent) for p in tracked} | {
        str(parent) for p in tracked for parent in Path(p).parents}
    missing = []
    for code in re.findall(r"`([^`\s]+)`", _readme()):
        path = code.split(":")[0].removeprefix("./").rstrip("/")
        looks_like_path = re.fullmatch(r"[\w.-]+(?:/[\w.-]+)*", path) and (
            "/" in path or re.search(r"\.(?:md|py|json|ya?ml|txt|toml|sh|bicep)$", path))
        if not looks_like_path or f"{path}/".startswith(MADE_LATER) or path in MADE_LATER:
            continue
        if path not in present:
            missing.append(code)
    assert not missing, f"the README names paths a clone does not have: {missing}"
