"""The worker commands, ``flask outbox work`` and ``flask streams relay``, run
in processes of their own and continue the trace of the request that wrote
their message or event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from flask_patterns import observe
from flask_patterns.db import Database
from flask_patterns.outbox import metadata as outbox_metadata
from flask_patterns.outbox import Outbox
from flask_patterns.streams import EventStreams
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.extension import event_relay
from flask_patterns.streams.relay import metadata as relay_metadata
from flask_patterns.tracing import observer_of
from flask_patterns.tracing import Tracing

#: The worker's app: it configures the SDK as a deployment would, and writes
#: each span it ends as one JSON line.
WORKER_APP = textwrap.dedent(
    """
    import json
    import os

    from flask import Flask
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from flask_patterns.db import Database
    from flask_patterns.outbox import Outbox
    from flask_patterns.streams import EventStreams
    from flask_patterns.streams import RedisBroker
    from flask_patterns.tracing import Tracing


    def line(span):
        parent = span.parent
        return json.dumps({
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": span.context.trace_id,
            "span_id": span.context.span_id,
            "parent_id": parent and parent.span_id,
            "remote": parent and parent.is_remote,
            "attributes": dict(span.attributes),
        }) + "\\n"


    def create_app():
        provider = TracerProvider()
        out = open(os.environ["TRACED_SPANS"], "a")
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=line))
        )
        trace.set_tracer_provider(provider)
        app = Flask(__name__)
        app.config["PATTERNS_DATABASE_URL"] = os.environ["TRACED_DATABASE_URL"]
        db = Database(app)
        Outbox(app, db=db).handler("mail")(lambda message: None)
        EventStreams(app, broker=RedisBroker(os.environ["TRACED_REDIS_URL"]))
        Tracing(app)
        return app
    """
)


@pytest.fixture
def app(database_url, redis_url):
    """The web side: a traced app on the test's database and Redis whose
    mail handler is never available, so that only the worker delivers."""
    app = Flask(__name__)
    app.config["PATTERNS_DATABASE_URL"] = database_url
    db = app.extensions["test.db"] = Database(app)
    outbox = app.extensions["test.outbox"] = Outbox(app, db=db)
    outbox.handler("mail", available=lambda: False)(lambda message: None)
    broker = RedisBroker(redis_url)
    EventStreams(app, broker=broker)
    with app.app_context():
        for metadata in (outbox_metadata, relay_metadata):
            metadata.create_all(db.engine)
    provider = TracerProvider()
    Tracing(app, tracer_provider=provider)
    app.extensions["test.tracer"] = provider.get_tracer("tests")
    yield app
    observe.remove_observer(observer_of(app))
    broker.close()
    db.engine_for(app).dispose()


def run_worker(tmp_path, database_url, redis_url, *command):
    """Run ``flask <command>`` on the worker's app; the spans it ended."""
    (tmp_path / "worker_app.py").write_text(WORKER_APP)
    spans = tmp_path / "spans.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "TRACED_SPANS": str(spans),
        "TRACED_DATABASE_URL": database_url,
        "TRACED_REDIS_URL": redis_url,
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "worker_app", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in spans.read_text().splitlines()]


def test_the_outbox_worker_delivers_a_message_in_the_request_trace(
    app, tmp_path, database_url, redis_url
):
    request_span = app.extensions["test.tracer"].start_as_current_span(
        "POST /signup", kind=SpanKind.SERVER
    )
    with request_span as span, app.app_context():
        app.extensions["test.outbox"].add("mail", {"to": "a"})
    spans = run_worker(tmp_path, database_url, redis_url, "outbox", "work", "--once")
    (delivery,) = [s for s in spans if s["name"] == "flask_patterns.outbox.deliver"]
    assert delivery["trace_id"] == span.get_span_context().trace_id
    assert delivery["parent_id"] == span.get_span_context().span_id
    assert delivery["remote"] is True
    assert delivery["kind"] == "CONSUMER"
    assert delivery["attributes"] == {"kind": "mail"}
    assert {s["trace_id"] for s in spans} == {delivery["trace_id"]}, (
        "the worker's polls start no trace of their own"
    )


def test_the_relay_command_relays_a_held_event_in_the_request_trace(
    app, tmp_path, database_url, redis_url
):
    request_span = app.extensions["test.tracer"].start_as_current_span(
        "POST /orders", kind=SpanKind.SERVER
    )
    # Held and committed by a process that ended before it relayed the event.
    with request_span as span, app.app_context():
        session = app.extensions["test.db"].session
        event_relay(app).hold(session, "orders", "paid", None)
    spans = run_worker(tmp_path, database_url, redis_url, "streams", "relay", "--once")
    with app.app_context():
        assert event_relay(app).held() == 0
    (relay,) = [s for s in spans if s["name"] == "flask_patterns.streams.relay"]
    (publish,) = [s for s in spans if s["name"] == "flask_patterns.streams.publish"]
    assert relay["trace_id"] == span.get_span_context().trace_id
    assert relay["parent_id"] == span.get_span_context().span_id
    assert relay["remote"] is True
    assert relay["kind"] == "CONSUMER"
    assert relay["attributes"] == {"channel": "orders"}
    assert publish["trace_id"] == relay["trace_id"]
    assert publish["parent_id"] == relay["span_id"]
    assert publish["kind"] == "PRODUCER"
