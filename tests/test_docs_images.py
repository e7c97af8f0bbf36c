"""The pictures of the documentation: each one a page shows is there, and
each one there is shown."""

from __future__ import annotations

import pathlib
import re

DOCS = pathlib.Path(__file__).parents[1] / "docs"
_IMAGE = re.compile(r"!\[[^\]]+\]\(([^)\s]+)\)")


def shown() -> set[pathlib.Path]:
    return {
        (page.parent / target).resolve()
        for page in DOCS.glob("*.md")
        for target in _IMAGE.findall(page.read_text())
    }


def test_every_picture_a_page_shows_exists_and_has_a_description():
    missing = sorted(str(path) for path in shown() if not path.is_file())
    assert missing == []
    for page in DOCS.glob("*.md"):
        assert "![](" not in page.read_text(), f"{page.name}: a picture without alt"


def test_every_picture_in_docs_images_is_shown():
    stored = {path.resolve() for path in (DOCS / "images").rglob("*.png")}
    assert stored, "the storefront's screenshots are in docs/images/storefront"
    assert sorted(map(str, stored - shown())) == []
