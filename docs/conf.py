"""Sphinx configuration of the documentation site (``nox -s docs``)."""

from __future__ import annotations

from importlib import metadata

project = "flask-patterns"
author = "The flask-patterns Authors"
copyright = "2026, The flask-patterns Authors"
release = metadata.version("flask-patterns")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "examples"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = f"flask-patterns {release}"
