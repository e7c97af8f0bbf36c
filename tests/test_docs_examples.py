"""Every ```python block of README.md and docs/*.md runs: the blocks of one page,
in order, as one program in a module of its own, so that an example cannot
break without a test failing. Each program is written to a file in the test's
directory, padded so that a line number in its traceback is the page's line.

The only change made to an example is the Redis URL, replaced by the test
Redis. docs/getting-started.md includes docs/examples/notes.py, which has a
test of its own below.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from .docs_examples import close_what_it_opened
from .docs_examples import page_program
from .docs_examples import python_fences
from .docs_examples import run_module

ROOT = Path(__file__).resolve().parent.parent
DOCS_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Pages known to have python blocks: if the extractor misses them, it is broken.
KNOWN_PAGES = {
    "README.md",
    "assets.md",
    "bodies.md",
    "event-streams.md",
    "flask-sqlalchemy.md",
    "logging.md",
    "observing.md",
    "outbox.md",
    "redirects.md",
    "responses.md",
    "tokens.md",
    "tracing.md",
    "unit-of-work.md",
}


def pages_with_examples() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [page for page in pages if python_fences(page)]


def module_name(page: Path) -> str:
    return "docs_example_" + re.sub(r"\W", "_", page.stem)


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda page: page.name)
def test_the_examples_of_a_page_run_in_order(page, tmp_path, monkeypatch, request):
    code = page_program(page)
    if DOCS_REDIS_URL in code:
        code = code.replace(DOCS_REDIS_URL, request.getfixturevalue("redis_url"))
    module = run_module(code, module_name(page), tmp_path, monkeypatch)
    close_what_it_opened(vars(module))


def test_the_pages_with_examples_are_found():
    found = {page.name for page in pages_with_examples()}
    assert found, "no python block found in README.md or docs/"
    assert found >= KNOWN_PAGES, f"missing: {sorted(KNOWN_PAGES - found)}"


def test_an_indented_block_is_found_and_keeps_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n- A list item:\n\n  ```python\n  x = 1\n  ```\n\n"
        "```sh\necho no\n```\n\n```python\ny = x + 1\n```\n"
    )
    assert python_fences(page) == [(5, "x = 1\n"), (13, "y = x + 1\n")]
    assert page_program(page).splitlines()[5] == "x = 1"
    assert page_program(page).splitlines()[13] == "y = x + 1"


def test_the_getting_started_app_runs_end_to_end(tmp_path, monkeypatch, caplog):
    """docs/getting-started.md's notes.py, as its shell session uses it."""
    code = (ROOT / "docs" / "examples" / "notes.py").read_text(encoding="utf-8")
    notes = run_module(code, "docs_example_notes", tmp_path, monkeypatch)
    app = notes.app
    try:
        assert Path(app.instance_path) == tmp_path / "instance"
        result = app.test_cli_runner().invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        client = app.test_client()
        with caplog.at_level(logging.WARNING, logger=app.logger.name):
            response = client.post("/notes", data={"text": "hello"})
        assert response.status_code == 201
        assert response.json == {"id": 1}
        assert client.get("/notes").json == {"notes": ["hello"]}
        assert "note 1 is saved" in caplog.messages
    finally:
        close_what_it_opened(vars(notes))
