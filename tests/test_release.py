"""What a release ships with: its license text, a changelog entry for its
version, classifiers that say which Pythons it supports, and a README whose
links still work on PyPI."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from markdown_it import MarkdownIt
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_text_ships_and_matches_the_metadata():
    meta = metadata.metadata("flask-patterns")
    assert meta["License-Expression"] == "BSD-3-Clause"
    text = (ROOT / "LICENSE").read_text()
    assert "Redistribution and use in source and binary forms" in text
    assert "Neither the name of the copyright holder" in text, "clause 3"


def test_the_changelog_opens_with_the_version_being_built():
    version = Version(metadata.version("flask-patterns"))
    headings = re.findall(
        r"^## Version (\S+)$", (ROOT / "CHANGELOG.md").read_text(), re.M
    )
    assert headings, "no '## Version' heading in CHANGELOG.md"
    assert Version(headings[0]) == Version(version.base_version)


def test_one_classifier_per_supported_python_from_the_floor_up():
    meta = metadata.metadata("flask-patterns")
    versions = sorted(
        Version(value.rsplit(" :: ", 1)[1])
        for value in meta.get_all("Classifier") or []
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", value)
    )
    assert [str(v) for v in versions] == ["3.10", "3.11", "3.12", "3.13"]
    assert meta["Requires-Python"] == f">={versions[0]}"


def test_the_project_urls_name_the_docs_and_the_changes():
    urls = dict(
        value.split(", ", 1)
        for value in metadata.metadata("flask-patterns").get_all("Project-URL") or []
    )
    assert urls["Documentation"].startswith("https://")
    assert urls["Changes"].startswith(urls["Documentation"])


def test_no_development_tool_is_a_published_extra():
    extras = set(metadata.metadata("flask-patterns").get_all("Provides-Extra") or [])
    assert extras == {
        "postgres",
        "redis",
        "gevent",
        "assets",
        "flask-sqlalchemy",
        "metrics",
        "otel",
    }


def test_every_link_of_the_readme_is_absolute_so_it_works_on_pypi():
    tokens = MarkdownIt().parse((ROOT / "README.md").read_text())
    links = [
        child.attrs["href"]
        for token in tokens
        if token.children
        for child in token.children
        if child.type == "link_open"
    ]
    assert links, "the README links to its docs"
    relative = [link for link in links if not str(link).startswith("https://")]
    assert relative == []


def test_every_docs_page_the_readme_links_to_exists():
    text = (ROOT / "README.md").read_text()
    pages = re.findall(r"readthedocs\.io/en/latest/([\w-]+)\.html", text)
    assert pages
    missing = [page for page in pages if not (ROOT / "docs" / f"{page}.md").exists()]
    assert missing == []
