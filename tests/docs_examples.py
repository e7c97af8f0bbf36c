"""Running the ```python examples of the Markdown pages as programs, for the
tests of README.md and docs/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from flask import Flask
from markdown_it import MarkdownIt

from flask_patterns.db.state import database_state
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.extension import streams_state


def python_fences(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown page, each with the (0-based) line of
    the page its code starts on; fences indented in list items included."""
    tokens = MarkdownIt().parse(path.read_text(encoding="utf-8"))
    return [
        (token.map[0] + 1, token.content)
        for token in tokens
        if token.type == "fence"
        and token.info.split()[:1] == ["python"]
        and token.map is not None
    ]


def page_program(path: Path) -> str:
    """A page's python blocks in order, each placed on the lines it has in the
    page."""
    lines: list[str] = []
    for start, code in python_fences(path):
        assert start >= len(lines), f"{path.name}: blocks overlap at line {start}"
        lines += [""] * (start - len(lines))
        lines += code.splitlines()
    return "\n".join(lines) + "\n"


def run_module(code: str, name: str, tmp_path: Path, monkeypatch) -> ModuleType:
    """Import ``code`` from a file in ``tmp_path`` (also the working directory)
    as module ``name``, so that ``Flask(__name__)`` puts its instance folder
    there. What it opened is closed when the import fails."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"{name}.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        close_what_it_opened(vars(module))
        raise
    return module


def close_what_it_opened(namespace: dict) -> None:
    """Dispose the engines and close the brokers of the apps a page made, so
    that no connection is left to a ResourceWarning."""
    values = list(namespace.values())
    for value in values:
        if isinstance(value, Flask):
            if "flask_patterns.streams" in value.extensions:
                broker = streams_state(value).broker
                if isinstance(broker, RedisBroker):
                    broker.close()
            if "flask_patterns.db" in value.extensions:
                database_state(value).engine.dispose()
        elif isinstance(value, sa.Engine):
            value.dispose()
        elif isinstance(value, RedisBroker):
            value.close()
