"""A request id in every log line: of the request, of its after-commit
callbacks, and of the work done for it later elsewhere (the outbox worker's
delivery of its mail, the relay of its held events, a stream process writing
its events).

:class:`RequestIds` gives each request an id (the client's ``X-Request-ID``
when it is a sane token, a new one if not) and returns it in the response;
:class:`RequestIdObserver` stores it with the messages and events the request
makes and sets it again where they are handled; :class:`RequestIdFilter` and
:class:`JsonFormatter` put it in the log lines. See ``docs/logging.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import re
import typing as t
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from flask import current_app
from flask import Flask
from flask import request
from flask import request_started
from flask import request_tearing_down
from flask.wrappers import Response

from . import observe
from ._registry import refuse_second
from ._registry import register
from ._registry import state_of
from .context import pop_task_state
from .context import task_state

try:  # the ``otel`` extra: trace and span ids in JSON lines
    from opentelemetry import trace as _otel_trace

    _HAS_OTEL = True
except ImportError:  # pragma: no cover - installed in the test environment
    _HAS_OTEL = False

__all__ = [
    "TEXT_FORMAT",
    "JsonFormatter",
    "RequestIdFilter",
    "RequestIdObserver",
    "RequestIds",
    "current_request_id",
]

_NAME = "request_ids"
_RESET = "request_id_reset"

#: A log format for :class:`logging.Formatter` with the request id, for
#: handlers that have a :class:`RequestIdFilter`.
TEXT_FORMAT = "[%(asctime)s] %(levelname)s in %(name)s [%(request_id)s]: %(message)s"

#: What an incoming id may be: a token that cannot break a log line or
#: pretend to be another field.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_request_id: ContextVar[str | None] = ContextVar(
    "flask_patterns.request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request this code runs for (in its thread or greenlet,
    or in work resumed for it later), or ``None``."""
    return _request_id.get()


def _sane(value: object) -> str | None:
    return value if isinstance(value, str) and _SANE.fullmatch(value) else None


@contextlib.contextmanager
def _bound(request_id: str) -> t.Iterator[None]:
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _reset(token)


def _reset(token: t.Any) -> None:
    try:
        _request_id.reset(token)
    except ValueError:  # set in another context: forget it all the same
        _request_id.set(None)


class RequestIdObserver(observe.Observer):
    """Stores the current request id with each outbox message and stream
    event (see :func:`flask_patterns.observe.carry`), and sets it again
    around the work done for them later, in any process."""

    def carry(self) -> observe.Carried:
        request_id = _request_id.get()
        return {} if request_id is None else {"request_id": request_id}

    def resume(
        self, name: str, carried: observe.Carried, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None] | None:
        request_id = _sane(carried.get("request_id"))
        return None if request_id is None else _bound(request_id)


#: Added once per process, by the first :meth:`RequestIds.init_app`.
_OBSERVER = RequestIdObserver()


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record that passes (``-`` when there is
    none), for formats such as :data:`TEXT_FORMAT`. A record that names one
    itself (``extra={"request_id": ...}``) keeps it. Add it to a handler: it
    never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``request_id`` (``null`` when there is none),
    ``exception`` and ``stack`` when the record has them, and ``trace_id`` and
    ``span_id`` when OpenTelemetry is installed and a span is current. Newlines
    in a message are escaped, so one record is always one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        entry.update(_trace_ids())
        return json.dumps(entry, default=str)


def _utc(created: float) -> str:
    moment = dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_id_of(record: logging.LogRecord) -> str | None:
    request_id = getattr(record, "request_id", None)
    if request_id is None:
        return _request_id.get()
    return None if request_id == "-" else str(request_id)


def _trace_ids() -> dict[str, str]:
    if not _HAS_OTEL:  # pragma: no cover - installed in the test environment
        return {}
    context = _otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


@dataclass(frozen=True)
class _RequestIdState:
    #: The header the id is read from and returned in.
    header: str
    #: Whether a client's sane id is kept (behind a proxy that sets it).
    trust_incoming: bool


class RequestIds:
    """Gives every request of an app an id, returned in the response's
    ``X-Request-ID`` header and put in every log line written for it (with
    :class:`RequestIdFilter` or :class:`JsonFormatter` on the handler).

    The id is the request's ``X-Request-ID`` when it is 1 to 128 characters of
    letters, digits and ``._:-`` (nginx's ``$request_id``, another service's
    id), and a new one (32 hex digits) when it is absent or anything else: a
    header never writes into a log line.

    :param app: register on this app at once, or later with :meth:`init_app`.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app``; reads ``PATTERNS_REQUEST_ID_HEADER`` and
        ``PATTERNS_REQUEST_ID_TRUST_INCOMING`` now."""
        refuse_second(app, _NAME, what="RequestIds")
        app.config.setdefault("PATTERNS_REQUEST_ID_HEADER", "X-Request-ID")
        app.config.setdefault("PATTERNS_REQUEST_ID_TRUST_INCOMING", True)
        state = _RequestIdState(
            header=str(app.config["PATTERNS_REQUEST_ID_HEADER"]),
            trust_incoming=bool(app.config["PATTERNS_REQUEST_ID_TRUST_INCOMING"]),
        )
        register(app, _NAME, state, what="RequestIds")
        # Signals, not hooks: the id is set before the first before_request
        # function and kept until the last teardown_request one has run,
        # whatever the order the extensions were registered in.
        request_started.connect(_begin, app, weak=False)
        request_tearing_down.connect(_end, app, weak=False)
        app.after_request(_answer)
        observe.add_observer(_OBSERVER)


def _state() -> _RequestIdState:
    return state_of(current_app, _NAME, _RequestIdState, what="RequestIds")


def _begin(sender: Flask, **extra: object) -> None:
    state = _state()
    incoming = request.headers.get(state.header) if state.trust_incoming else None
    request_id = _sane(incoming) or uuid.uuid4().hex
    token = _request_id.set(request_id)
    task_state(_RESET, lambda: token)


def _end(sender: Flask, **extra: object) -> None:
    token = pop_task_state(_RESET)
    if token is not None:
        _reset(token)


def _answer(response: Response) -> Response:
    request_id = _request_id.get()
    if request_id is not None:
        response.headers.setdefault(_state().header, request_id)
    return response
