"""The sample outputs of the README and of every page of the documentation site (docs/) are what the code prints
today: every `$ losslab ...` block whose command runs here as shown (no file it needs from elsewhere, no pipe) is
run, and each line a page shows must be a line of the output — timings (elapsed, it/s, seconds, time left) aside.
The option reference (docs/reference/options.md) is what `python -m losslab.cli.reference` writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a dozen commands

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TIMING = [
    (re.compile(r"\belapsed \S+"), "elapsed T"),
    (re.compile(r"\b(it|samples)/s [\d,]+"), r"\1/s N"),
    (re.compile(r"\s+(about [^,]*? left|less than a second left)$"), ""),
    (re.compile(r"\b\d+(\.\d+)? s\b"), "T s"),
    (re.compile(r"\(\d+(\.\d+)? s\)"), "(T s)"),
    (re.compile(r"\b\d+\.\d+s\b"), "Ts"),
]
TIMED_COLUMNS = ("ms/epoch",)  # tables whose rows carry a time per epoch: compared up to the timed column


def normal(line: str) -> str:
    for pattern, replacement in TIMING:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


SETUP = re.compile(r"^\$ (losslab [^|&<>#]+?) > ([\w./-]+)$")  # a step whose output a later command reads


def blocks(page: Path) -> list[tuple[str, list[str], list[tuple[str, str]]]]:
    """(command, shown output lines, setup steps) of every block of `page` that starts with `$ losslab` and runs as
    shown; `$ losslab ... > FILE` lines before it in the same code block are its setup (run first, into FILE)."""
    out, lines = [], page.read_text(encoding="utf-8").splitlines()
    setup: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if line.startswith("```"):
            setup = []
        step = SETUP.match(line)
        if step:
            setup.append((step.group(1), step.group(2)))
            continue
        if not line.startswith("$ losslab ") or any(c in line for c in "|>&<") or "#" in line:
            continue
        shown = []
        for rest in lines[i + 1:]:
            if rest.startswith("```") or rest.startswith("$ "):
                break
            shown.append(rest)
        out.append((line[2:], shown, list(setup)))
    return out


BLOCKS = [(page.relative_to(ROOT).as_posix(), *block) for page in PAGES for block in blocks(page)]


@pytest.mark.parametrize("page, command, shown, setup", BLOCKS, ids=[f"{p}: {c}" for p, c, _, _ in BLOCKS])
def test_a_documented_sample_is_what_the_command_prints(cli, page, command, shown, setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for step, target in setup:
        made = cli(*shlex.split(step)[1:])
        assert made.exit_code in (0, 1), made.stderr
        (tmp_path / target).write_text(made.stdout)
    args = shlex.split(command)[1:]
    run = cli(*args)
    assert run.exit_code in (0, 1, 3), run.stderr
    printed = {normal(line) for line in (run.stdout + run.stderr).splitlines()}
    missing, timed = [], False
    for line in shown:
        if any(col in line for col in TIMED_COLUMNS):  # a table with a time per epoch: its rows are timings
            timed = True
            continue
        if timed and ": " not in line:
            continue
        timed = False
        if line.strip() and line.strip() != "..." and normal(line) not in printed:
            missing.append(line)
    assert not missing, f"{page}: lines no longer printed:\n" + "\n".join(missing)


def test_the_option_reference_is_current():
    from losslab.cli.reference import page

    written = (ROOT / "docs" / "reference" / "options.md").read_text(encoding="utf-8")
    assert written == page(), "run: python -m losslab.cli.reference > docs/reference/options.md"


def test_every_page_is_in_the_sites_nav_and_the_readme_links_only_pages_that_exist():
    import re

    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in (ROOT / "docs").rglob("*.md"):
        assert page.relative_to(ROOT / "docs").as_posix() in nav, page
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        assert link.startswith("http") or (ROOT / link).exists(), link
