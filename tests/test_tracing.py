"""OpenTelemetry spans: the commit and its callbacks under the request's span,
and the outbox delivery, the relay and a stream worker's delivery in the trace
of the request that caused them, in another task or process later."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import sqlalchemy as sa
from conftest import wait_until
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode

from flask_patterns import observe
from flask_patterns.db import after_commit
from flask_patterns.db import Database
from flask_patterns.outbox import metadata as outbox_metadata
from flask_patterns.outbox import Outbox
from flask_patterns.streams import EventStreams
from flask_patterns.streams import Listener
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.extension import event_relay
from flask_patterns.streams.relay import metadata as relay_metadata
from flask_patterns.tracing import observer_of
from flask_patterns.tracing import Tracing

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
#: Stands for the instrumentation that makes request and worker spans.
_outer = _provider.get_tracer("tests")

item = sa.Table(
    "item",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
)


@pytest.fixture
def spans():
    """The exporter, empty at the start of the test."""
    _exporter.clear()
    yield _exporter
    _exporter.clear()


@pytest.fixture
def make_app(database_url, spans):
    """Build traced apps on the test's database; their observer is removed
    and their engines and brokers closed after the test."""
    made = []

    def make(broker=None):
        app = Flask(__name__)
        app.config["PATTERNS_DATABASE_URL"] = database_url
        db = app.extensions["test.db"] = Database(app)
        app.extensions["test.outbox"] = Outbox(app, db=db)
        if broker is not None:
            app.extensions["test.streams"] = EventStreams(app, broker=broker)
        with app.app_context():
            for metadata in (item.metadata, outbox_metadata, relay_metadata):
                metadata.create_all(db.engine)
        Tracing(app, tracer_provider=_provider)
        made.append((app, db, broker))
        return app

    yield make
    for app, db, broker in made:
        observe.remove_observer(observer_of(app))
        db.engine_for(app).dispose()
        if broker is not None:
            broker.close()
    left = [app for app, _, _ in made if observer_of(app) in observe.observers()]
    assert not left, "no observer is left for other tests"


def request(app, path, name="POST /orders"):
    """Send a request inside a span standing for the request span of
    opentelemetry-instrumentation-flask; returns that span."""
    with _outer.start_as_current_span(name, kind=SpanKind.SERVER) as span:
        response = app.test_client().post(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return span


def named(spans, name):
    return [span for span in spans.get_finished_spans() if span.name == name]


def wait_for_span(spans, name, timeout=10.0):
    """The one span called ``name``, once it ended (another thread ends it)."""
    deadline = time.monotonic() + timeout
    while not (found := named(spans, name)):
        assert time.monotonic() < deadline, f"no {name} span"
        time.sleep(0.02)
    (span,) = found
    return span


def ids(span):
    return span.context.trace_id, span.context.span_id


def test_the_commit_and_each_callback_are_spans_under_the_request_span(make_app, spans):
    app = make_app()

    def confirm():
        pass

    @app.post("/orders")
    def order():
        app.extensions["test.db"].session.execute(item.insert().values(name="tea"))
        after_commit(confirm)
        return "ok"

    outer = request(app, "/orders")
    (commit,) = named(spans, "flask_patterns.db.commit")
    (callback,) = named(spans, "flask_patterns.after_commit")
    for span in (commit, callback):
        assert span.parent.span_id == outer.get_span_context().span_id
        assert span.context.trace_id == outer.get_span_context().trace_id
        assert span.kind is SpanKind.INTERNAL
        assert span.status.status_code is StatusCode.UNSET
    assert callback.attributes["callback"].endswith("confirm")
    assert commit.end_time <= callback.start_time, "callbacks run after the commit"


def test_a_failing_callback_span_has_an_error_status_and_the_exception(make_app, spans):
    app = make_app()

    def notify():
        raise ConnectionError("the mail server is away")

    @app.post("/orders")
    def order():
        after_commit(notify)  # robust: logged, and the request still succeeds
        return "ok"

    outer = request(app, "/orders")
    (callback,) = named(spans, "flask_patterns.after_commit")
    assert callback.parent.span_id == outer.get_span_context().span_id
    assert callback.status.status_code is StatusCode.ERROR
    assert "the mail server is away" in callback.status.description
    (event,) = callback.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.message"] == "the mail server is away"
    (request_span,) = named(spans, "POST /orders")
    assert request_span.status.status_code is StatusCode.UNSET


def test_work_outside_any_span_starts_no_trace(make_app, spans):
    app = make_app()
    with app.app_context():
        app.extensions["test.db"].session.execute(item.insert().values(name="tea"))
        after_commit(lambda: None)
    assert spans.get_finished_spans() == ()


def test_a_message_the_worker_delivers_later_is_in_the_request_trace(make_app, spans):
    app = make_app()
    outbox = app.extensions["test.outbox"]
    ready, sent = [False], []
    outbox.handler("mail", available=lambda: ready[0])(sent.append)

    @app.post("/orders")
    def order():
        outbox.add("mail", {"to": "ann@example.com"})
        return "ok"

    outer = request(app, "/orders")
    assert named(spans, "flask_patterns.outbox.deliver") == []
    ready[0] = True
    with _outer.start_as_current_span("outbox worker") as worker, app.app_context():
        assert outbox.work() == 1
    assert len(sent) == 1
    delivery = wait_for_span(spans, "flask_patterns.outbox.deliver")
    assert delivery.context.trace_id == outer.get_span_context().trace_id
    assert delivery.parent.span_id == outer.get_span_context().span_id
    assert delivery.parent.is_remote, "its parent came with the message"
    assert delivery.kind is SpanKind.CONSUMER
    assert delivery.attributes["kind"] == "mail"
    (link,) = delivery.links
    assert link.context.span_id == worker.get_span_context().span_id
    # Recording the delivery is part of it.
    finish = [s for s in named(spans, "flask_patterns.db.commit") if s.parent]
    assert delivery.context.span_id in {s.parent.span_id for s in finish}


def test_a_message_delivered_right_after_the_commit_nests_under_its_callback(
    make_app, spans
):
    app = make_app()
    outbox = app.extensions["test.outbox"]
    outbox.handler("mail")(lambda message: None)

    @app.post("/orders")
    def order():
        outbox.add("mail", {"to": "ann@example.com"})
        return "ok"

    outer = request(app, "/orders")
    (callback,) = named(spans, "flask_patterns.after_commit")
    (delivery,) = named(spans, "flask_patterns.outbox.deliver")
    assert callback.parent.span_id == outer.get_span_context().span_id
    assert delivery.parent.span_id == callback.context.span_id
    assert not delivery.parent.is_remote
    assert delivery.links == ()
    assert delivery.context.trace_id == outer.get_span_context().trace_id


def test_a_failed_delivery_span_has_an_error_status_and_the_exception(make_app, spans):
    app = make_app()
    outbox = app.extensions["test.outbox"]

    @outbox.handler("mail")
    def send(message):
        raise ConnectionRefusedError("no mail server")

    @app.post("/orders")
    def order():
        outbox.add("mail", {"to": "ann@example.com"})
        return "ok"

    request(app, "/orders")  # the attempt fails; the message waits for a retry
    (delivery,) = named(spans, "flask_patterns.outbox.deliver")
    assert delivery.status.status_code is StatusCode.ERROR
    assert delivery.status.description == "ConnectionRefusedError: no mail server"
    (event,) = delivery.events
    assert event.attributes["exception.type"] == "ConnectionRefusedError"


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "best-effort"])
def test_an_event_a_stream_worker_delivers_is_in_the_request_trace(
    make_app, spans, redis_url, durable
):
    app = make_app(RedisBroker(redis_url, prefix="{traced}:"))
    stream_worker = RedisBroker(redis_url, prefix="{traced}:")
    listener = Listener(["orders"])
    stream_worker.subscribe(listener)
    assert stream_worker.wait_until_subscribed(10)

    @app.post("/orders")
    def order():
        app.extensions["test.streams"].publish("orders", {"n": 1}, durable=durable)
        return "ok"

    try:
        outer = request(app, "/orders")
        assert listener.receive(timeout=10).data == '{"n":1}'
        delivery = wait_for_span(spans, "flask_patterns.streams.deliver")
    finally:
        stream_worker.unsubscribe(listener)
        stream_worker.close()
    (publish,) = named(spans, "flask_patterns.streams.publish")
    (callback,) = named(spans, "flask_patterns.after_commit")
    assert callback.parent.span_id == outer.get_span_context().span_id
    if durable:
        (relay,) = named(spans, "flask_patterns.streams.relay")
        assert relay.parent.span_id == callback.context.span_id
        assert relay.kind is SpanKind.CONSUMER
        assert relay.attributes["channel"] == "orders"
        assert publish.parent.span_id == relay.context.span_id
    else:
        assert named(spans, "flask_patterns.streams.relay") == []
        assert publish.parent.span_id == callback.context.span_id
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes["channel"] == "orders"
    assert delivery.context.trace_id == outer.get_span_context().trace_id
    assert delivery.parent.span_id == publish.context.span_id
    assert delivery.parent.is_remote
    assert delivery.kind is SpanKind.CONSUMER
    assert delivery.attributes["channel"] == "orders"
    assert delivery.links == (), "the subscriber thread has no span of its own"


def test_an_event_held_while_redis_was_away_is_relayed_in_the_request_trace(
    make_app, spans, redis_process
):
    app = make_app(RedisBroker(redis_process.url))

    @app.post("/orders")
    def order():
        app.extensions["test.streams"].publish("orders", "paid")
        return "ok"

    redis_process.stop()
    outer = request(app, "/orders")
    request_id = outer.get_span_context().span_id
    (callback,) = named(spans, "flask_patterns.after_commit")
    tried = named(spans, "flask_patterns.streams.relay")[0]
    assert tried.parent.span_id == callback.context.span_id
    assert tried.status.status_code is StatusCode.ERROR, "Redis was away"

    redis_process.start()
    with app.app_context():
        wait_until(lambda: event_relay(app).held() == 0, "the relay")
    # The relay's thread tried meanwhile, each time in the request's trace.
    relays = named(spans, "flask_patterns.streams.relay")[1:]
    *failed, relayed = relays
    for relay in relays:
        assert relay.context.trace_id == outer.get_span_context().trace_id
        assert relay.parent.span_id == request_id
        assert relay.parent.is_remote
        assert relay.kind is SpanKind.CONSUMER
        assert relay.attributes["channel"] == "orders"
    assert all(r.status.status_code is StatusCode.ERROR for r in failed)
    assert relayed.status.status_code is StatusCode.UNSET
    publish = named(spans, "flask_patterns.streams.publish")[-1]
    assert publish.parent.span_id == relayed.context.span_id
    assert publish.status.status_code is StatusCode.UNSET


def test_carry_writes_the_current_context_as_w3c_trace_context(make_app):
    make_app()
    assert observe.carry() is None, "nothing to carry outside a span"
    with _outer.start_as_current_span("request") as span:
        carried = observe.carry()
    context = span.get_span_context()
    assert carried == {
        "traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}"
        f"-{context.trace_flags:02x}"
    }


def test_apps_of_one_process_share_one_observer_added_once(make_app):
    first, second = make_app(), make_app()
    assert observer_of(first) is observer_of(second)
    assert observe.observers().count(observer_of(first)) == 1
    with pytest.raises(RuntimeError, match="already registered"):
        Tracing(first, tracer_provider=_provider)
    with pytest.raises(RuntimeError, match="not registered"):
        observer_of(Flask(__name__))


def test_a_provider_configured_after_the_app_is_built_gets_the_spans(tmp_path):
    # The global provider can be set once per process: in a process of its own.
    script = textwrap.dedent(
        f"""
        from flask import Flask
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        from flask_patterns.db import Database, after_commit
        from flask_patterns.tracing import Tracing

        app = Flask(__name__)
        app.config["PATTERNS_DATABASE_URL"] = "sqlite:///{tmp_path}/late.db"
        Database(app)
        Tracing(app)

        @app.post("/")
        def view():
            after_commit(lambda: None)
            return "ok"

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        with trace.get_tracer("app").start_as_current_span("POST /"):
            app.test_client().post("/")
        for span in exporter.get_finished_spans():
            print(span.name, span.instrumentation_scope.name)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "flask_patterns.after_commit flask_patterns",
        "POST / app",
    ]
