"""Where the shop's log lines go: standard error, as text or one JSON object
per line (``STOREFRONT_LOG_FORMAT``), each naming the request it was written
for; and the same for gunicorn's own lines, in ``deploy/gunicorn/``."""

from __future__ import annotations

import logging
import sys
import typing as t
from collections.abc import Mapping

from flask import Flask
from flask.logging import default_handler

from flask_patterns.logs import JsonFormatter
from flask_patterns.logs import RequestIdFilter
from flask_patterns.logs import TEXT_FORMAT

__all__ = [
    "LOG_FORMATS",
    "AccessRequestId",
    "configure_logging",
    "formatter",
    "gunicorn_logconfig",
]

#: What ``STOREFRONT_LOG_FORMAT`` may be.
LOG_FORMATS = ("text", "json")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (a test's capture, a
    redirect made after start-up), not the one it was made with."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> t.TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: t.TextIO) -> None:
        pass


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format``, one of :data:`LOG_FORMATS`."""
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"STOREFRONT_LOG_FORMAT={log_format!r} is not a log format:"
            " use text or json."
        )
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(app: Flask) -> None:
    """Write every log line of the process (the shop's, the library's, the
    other libraries') to standard error in ``app.config["LOG_FORMAT"]``, with
    its request id: one handler on the root logger, replacing the one an
    earlier app of this process put there, and instead of Flask's own handler
    on the app's logger, which would write the app's lines twice."""
    handler = _StderrHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(str(app.config["LOG_FORMAT"]).lower()))
    root = logging.getLogger()
    for earlier in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(earlier)
    root.addHandler(handler)
    logging.getLogger(app.import_name).removeHandler(default_handler)


class AccessRequestId(logging.Filter):
    """gunicorn writes its access line once the app is done with the request:
    take the request id from the ``X-Request-ID`` the response carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):
            request_id = record.args["{x-request-id}o"]
            record.request_id = request_id if request_id != "-" else None
        return True


def gunicorn_logconfig(
    log_format: str, *, access_log: str | None = "-", error_log: str = "-"
) -> dict[str, t.Any]:
    """gunicorn's ``logconfig_dict``: its error and access lines in
    ``log_format``, each with its request id, written where its ``errorlog``
    and ``accesslog`` settings say (``-``: standard error and output; ``None``:
    no access lines). The root logger gets no handler here: the app puts its
    own there (see :func:`configure_logging`)."""
    formatter(log_format)  # refused here, before gunicorn starts
    handlers = {"error": _handler(error_log, "ext://sys.stderr", log_format)}
    access: dict[str, t.Any] = {"level": "WARNING", "handlers": []}
    if access_log is not None:
        handlers["access"] = _handler(access_log, "ext://sys.stdout", log_format)
        handlers["access"]["filters"].insert(0, "access_request_id")
        access = {"handlers": ["access"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "access_request_id": {"()": AccessRequestId},
        },
        "formatters": {log_format: {"()": formatter, "log_format": log_format}},
        "handlers": handlers,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "propagate": False},
            "gunicorn.access": {**access, "propagate": False},
        },
    }


def _handler(target: str, standard: str, log_format: str) -> dict[str, t.Any]:
    where = (
        {"class": "logging.StreamHandler", "stream": standard}
        if target == "-"
        else {"class": "logging.FileHandler", "filename": target}
    )
    return {**where, "formatter": log_format, "filters": ["request_id"]}
