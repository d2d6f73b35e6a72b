"""Every link in the course resolves: the notebooks' markdown cells, README.md and docs/*.md.

- A relative link must name a file or folder that exists, relative to the page that holds it.
- An anchor (`page.ipynb#a-heading`, or `#a-heading` within the page) must match a heading of
  the target page, slugged the way GitHub does it, or an explicit `<a id="...">`.
- An http(s) link is only checked for its form: the tests run without a network.

Links inside code (fenced blocks and `inline code`) are not links, and are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nbformat as _nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
nbformat: Any = _nbformat  # no type hints: a dynamic module

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<a\s[^>]*href=\"([^\"]+)\"", re.IGNORECASE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXPLICIT_ANCHOR = re.compile(r"<a\s[^>]*(?:id|name)=\"([^\"]+)\"", re.IGNORECASE)


def pages() -> list[Path]:
    """Every page whose links the course promises: notebooks, the README, the docs."""
    found = sorted((REPO / "notebooks").rglob("*.ipynb"))
    found = [path for path in found if ".ipynb_checkpoints" not in path.parts]
    return [*found, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def markdown_of(path: Path) -> str:
    """The markdown of a page: a notebook's markdown cells, or a markdown file's text."""
    if path.suffix == ".ipynb":
        notebook = nbformat.read(path, as_version=4)
        return "\n\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return path.read_text(encoding="utf-8")


def without_code(markdown: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", markdown))


def links_in(markdown: str) -> list[str]:
    """The targets of the markdown and HTML links of a page, outside code."""
    text = without_code(markdown)
    return LINK.findall(text) + HTML_LINK.findall(text)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML tags
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a link keeps only its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """Every anchor a page offers: its headings' slugs (repeats numbered, as GitHub does), and
    explicit `<a id=...>` or `<a name=...>` anchors."""
    text = markdown_of(path)
    found: set[str] = set(EXPLICIT_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def problems_with(page: Path, target: str) -> str | None:
    """What is wrong with the link `target` on `page`, or None if it resolves."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        if "." not in parts.netloc or " " in target:
            return f"{target}: not a well-formed web address"
        return None
    if parts.scheme or parts.netloc:
        return f"{target}: only relative links and http(s) addresses are expected"
    destination = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if not destination.exists():
        return f"{target}: {os.path.relpath(destination, REPO)} does not exist"
    if parts.fragment:
        if destination.suffix not in (".md", ".ipynb"):
            return f"{target}: an anchor into a file that has no headings"
        if unquote(parts.fragment) not in anchors_of(destination):
            return f"{target}: no heading of {destination.name} has the anchor #{parts.fragment}"
    return None


@pytest.mark.parametrize("page", pages(), ids=lambda path: str(path.relative_to(REPO)))
def test_every_link_resolves(page: Path) -> None:
    problems = [problem for target in links_in(markdown_of(page)) if (problem := problems_with(page, target))]
    assert problems == [], f"{page.relative_to(REPO)}:\n" + "\n".join(problems)


def test_the_course_points_to_further_reading() -> None:
    """The course links out to the documentation and write-ups it builds on, not only to itself."""
    external = {
        target
        for page in pages()
        if page.suffix == ".ipynb"
        for target in links_in(markdown_of(page))
        if target.startswith("https://")
    }
    assert len(external) >= 15, sorted(external)
    assert any(target.startswith("https://docs.python.org/3/library/asyncio") for target in external)
    assert any(target.startswith("https://ipywidgets.readthedocs.io/") for target in external)


# The checker itself, on pages made to fail.


def test_slug_follows_github() -> None:
    assert slug("Exercise 5: give up, and try again") == "exercise-5-give-up-and-try-again"
    assert slug("`on_job_complete` and the `JobSummary`") == "on_job_complete-and-the-jobsummary"
    assert slug("07 · Workshop exercises") == "07--workshop-exercises"
    assert slug("See [the docs](https://example.org)") == "see-the-docs"


def test_links_in_code_are_not_links() -> None:
    markdown = "[a](a.md) `[b](b.md)`\n\n```python\nx = '[c](c.md)'\n```\n<a href=\"d.md\">d</a>"
    assert links_in(markdown) == ["a.md", "d.md"]


def test_a_missing_file_or_anchor_or_a_malformed_address_is_found(tmp_path: Path) -> None:
    (tmp_path / "target.md").write_text('# A title\n\n## Twice\n\n## Twice\n\n<a id="here"></a>\n')
    page = tmp_path / "page.md"
    page.write_text("")
    assert problems_with(page, "target.md#a-title") is None
    assert problems_with(page, "target.md#twice-1") is None
    assert problems_with(page, "target.md#here") is None
    assert problems_with(page, "https://docs.python.org/3/") is None
    assert "does not exist" in str(problems_with(page, "missing.md"))
    assert "no heading" in str(problems_with(page, "target.md#not-there"))
    assert "no heading" in str(problems_with(page, "#anywhere"))
    assert "well-formed" in str(problems_with(page, "https://localhost"))
    assert "only relative links" in str(problems_with(page, "ftp://example.org/file"))
