"""A real log handler for tests that read the lines themselves: the JSON
formatter and the request id filter on the root logger, writing to memory."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import typing as t

from flask_patterns.logs import JsonFormatter
from flask_patterns.logs import RequestIdFilter


class LogLines:
    """The JSON lines written to the root logger while it is installed."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(RequestIdFilter())
        self.handler.setFormatter(JsonFormatter())

    def raw(self) -> list[str]:
        with self.handler.lock or contextlib.nullcontext():
            return self.stream.getvalue().splitlines()

    def all(self) -> list[dict[str, t.Any]]:
        return [json.loads(line) for line in self.raw()]

    def containing(self, text: str) -> list[dict[str, t.Any]]:
        """The lines whose message contains ``text``."""
        return [line for line in self.all() if text in line["message"]]

    def one(self, text: str) -> dict[str, t.Any]:
        (line,) = self.containing(text)
        return line


@contextlib.contextmanager
def log_lines(*loggers: str, level: int = logging.INFO) -> t.Iterator[LogLines]:
    """Capture the root logger's lines, with ``loggers`` lowered to ``level``
    for the block."""
    lines = LogLines()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(level)
    root.addHandler(lines.handler)
    try:
        yield lines
    finally:
        root.removeHandler(lines.handler)
        for name, before in levels.items():
            logging.getLogger(name).setLevel(before)
