"""OpenTelemetry spans for what the library does, and the trace context that
outbox messages and stream events carry to the process that handles them.

:class:`Tracing` adds a :class:`TracingObserver` to :mod:`flask_patterns.observe`.
It uses the OpenTelemetry API only: the app chooses the SDK, its exporters and
its sampler, and the spans join whatever trace is current (the request span of
opentelemetry-instrumentation-flask, say). The context travels through the
globally configured propagator (W3C ``traceparent`` and ``tracestate`` by
default), so the mail a worker sends and the event a stream worker writes are
in the trace of the request that caused them. See ``docs/tracing.md``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import typing as t
from dataclasses import dataclass
from importlib import metadata

from flask import Flask
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace import Status
from opentelemetry.trace import StatusCode

from . import observe
from ._registry import refuse_second
from ._registry import register
from ._registry import state_of

__all__ = [
    "SPAN_KINDS",
    "TRACER_NAME",
    "Tracing",
    "TracingObserver",
    "observer_of",
]

_NAME = "tracing"

#: The instrumentation scope of every span the library makes.
TRACER_NAME = "flask_patterns"

#: The kind of each span, as OpenTelemetry's messaging conventions have it:
#: a publish sends a message (``PRODUCER``); an outbox delivery, a relay of a
#: held event and a stream process's delivery each process a message that
#: other work produced (``CONSUMER``); the rest is ``INTERNAL``.
SPAN_KINDS: t.Mapping[str, SpanKind] = {
    "flask_patterns.db.commit": SpanKind.INTERNAL,
    "flask_patterns.after_commit": SpanKind.INTERNAL,
    "flask_patterns.streams.publish": SpanKind.PRODUCER,
    "flask_patterns.outbox.deliver": SpanKind.CONSUMER,
    "flask_patterns.streams.relay": SpanKind.CONSUMER,
    "flask_patterns.streams.deliver": SpanKind.CONSUMER,
}


def _version() -> str | None:
    try:
        return metadata.version("flask-patterns")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return None


class TracingObserver(observe.Observer):
    """Makes the library's spans with the tracer ``flask_patterns``.

    The library never starts a trace of its own: a span is made only under a
    current span, or, for work done later, under the context it carried.

    :param tracer_provider: where the tracer comes from; by default the global
        provider, looked up at the first span, so that a provider configured
        after the app was built still gets them.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer_provider = tracer_provider
        self._tracer: trace.Tracer | None = None

    @property
    def tracer(self) -> trace.Tracer:
        """The tracer, got on first use. Before a global provider is set it
        is OpenTelemetry's proxy, which turns into the real one once it is."""
        if self._tracer is None:
            self._tracer = trace.get_tracer(
                TRACER_NAME, _version(), tracer_provider=self.tracer_provider
            )
        return self._tracer

    def span(
        self, name: str, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None] | None:
        """A child of the current span; none without one."""
        if not trace.get_current_span().get_span_context().is_valid:
            return None
        return self._started(name, SPAN_KINDS.get(name, SpanKind.INTERNAL), attributes)

    def outbox_delivered(self, kind: str, result: str) -> None:
        """Mark a failed delivery's span with an error status and the
        handler's exception: the outbox catches it inside the span, and tells
        this from the block that caught it."""
        if result == "sent":
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        error = sys.exc_info()[1]
        if isinstance(error, Exception):
            span.record_exception(error)
            description = f"{type(error).__name__}: {error}"
        else:
            description = f"delivery {result}"
        span.set_status(Status(StatusCode.ERROR, description))

    def carry(self) -> observe.Carried:
        """The current context, written by the global propagator."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    def resume(
        self, name: str, carried: observe.Carried, attributes: t.Mapping[str, str]
    ) -> t.ContextManager[None] | None:
        """A span whose parent is the carried context, made current with its
        baggage for the work. Done in the very trace that carried it (right
        after the commit, in the same request) it is a child of the current
        span instead; a current span of another trace (a worker's own) is
        linked to."""
        kind = SPAN_KINDS.get(name, SpanKind.CONSUMER)
        current = trace.get_current_span().get_span_context()
        extracted = propagate.extract(carried, context=otel_context.get_current())
        origin = trace.get_current_span(extracted).get_span_context()
        if not origin.is_valid or origin.trace_id == current.trace_id:
            if not current.is_valid:
                return None
            return self._started(name, kind, attributes)
        links = [trace.Link(current)] if current.is_valid else []
        return self._started(name, kind, attributes, extracted, links)

    @contextlib.contextmanager
    def _started(
        self,
        name: str,
        kind: SpanKind,
        attributes: t.Mapping[str, str],
        parent: otel_context.Context | None = None,
        links: t.Sequence[trace.Link] = (),
    ) -> t.Iterator[None]:
        """The span around the block; an exception in it is recorded and sets
        an error status (OpenTelemetry's default), then goes on."""
        token = None if parent is None else otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(
                name, kind=kind, attributes=dict(attributes), links=links
            ):
                yield
        finally:
            if token is not None:
                otel_context.detach(token)


_lock = threading.Lock()
#: One observer per tracer provider in a process, however many apps use it,
#: so that a span is never made twice.
_shared: dict[int, TracingObserver] = {}


def _observer_for(tracer_provider: trace.TracerProvider | None) -> TracingObserver:
    key = id(tracer_provider)
    with _lock:
        found = _shared.get(key)
        if found is None:
            # The observer keeps the provider alive: its id stays its own.
            found = _shared[key] = TracingObserver(tracer_provider)
        return found


@dataclass(frozen=True)
class _TracingState:
    observer: TracingObserver


class Tracing:
    """Trace the units of work, the outbox and the streams of an app, in every
    process that builds it: web and stream workers, and ``flask outbox work``
    and ``flask streams relay``, which run in an app context of the same app.

    :param app: register on this app at once, or later with :meth:`init_app`.
    :param tracer_provider: the provider of the spans; by default
        OpenTelemetry's global one. The apps of a process that use the same
        provider share one observer, added once.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        #: The observer this extension adds (see :func:`observer_of`).
        self.observer = _observer_for(tracer_provider)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` and add the observer to the process (once)."""
        refuse_second(app, _NAME, what="Tracing")
        register(app, _NAME, _TracingState(self.observer), what="Tracing")
        observe.add_observer(self.observer)


def observer_of(app: Flask) -> TracingObserver:
    """The observer :class:`Tracing` added for ``app``: remove it with
    :func:`flask_patterns.observe.remove_observer` to stop tracing (a test's
    teardown)."""
    return state_of(app, _NAME, _TracingState, what="Tracing").observer
