"""The request id in the lines of work done for a request later, elsewhere: its
after-commit callbacks, its outbox delivery by ``flask outbox work``, the relay
of its held events and a stream process's delivery of its events, on SQLite
and PostgreSQL and a real Redis."""

from __future__ import annotations

import logging
import threading

from conftest import wait_for
from flask import Flask

from flask_patterns.db import after_commit
from flask_patterns.db import Database
from flask_patterns.logs import current_request_id
from flask_patterns.logs import RequestIds
from flask_patterns.streams import EventStreams
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.listener import Listener
from flask_patterns.streams.relay import metadata as relay_metadata

from .conftest import Flaky
from .log_lines import log_lines

shop = logging.getLogger("tests.shop")


def test_a_purchase_its_callback_and_its_mail_sent_later_by_the_worker_share_the_id(
    app, outbox, clock
):
    RequestIds(app)

    @outbox.handler("mail")
    def send(message):
        shop.info("sending mail, attempt %d", message.attempts)
        if message.attempts == 1:
            raise Flaky("smtp down")

    @app.post("/buy")
    def buy():
        shop.info("buying")
        after_commit(lambda: shop.info("bought"))
        outbox.add("mail", {"to": "ada@example.com"})
        return "", 201

    with log_lines("tests.shop") as lines:
        response = app.test_client().post("/buy")
        assert response.status_code == 201
        with app.app_context():
            assert current_request_id() is None, "the worker's own task has none"
        clock(10)  # past the first backoff
        result = app.test_cli_runner().invoke(args=["outbox", "work", "--once"])
        assert result.exit_code == 0, result.output
    request_id = response.headers["X-Request-ID"]
    written = [(line["message"], line["request_id"]) for line in lines.all()]
    assert written == [
        ("buying", request_id),
        ("bought", request_id),
        ("sending mail, attempt 1", request_id),
        (
            "Outbox messages of kind 'mail' fail to deliver; retrying with backoff:"
            " smtp down",
            request_id,
        ),
        ("sending mail, attempt 2", request_id),
        (lines.one("deliver again")["message"], request_id),
    ]


def test_a_mail_written_outside_a_request_is_delivered_with_no_id(app, outbox):
    RequestIds(app)

    @outbox.handler("mail")
    def send(message):
        shop.info("sending mail")

    with log_lines("tests.shop") as lines, app.app_context():
        outbox.add("mail", {"to": "ada@example.com"})
    assert lines.one("sending mail")["request_id"] is None


class LoggingBroker(RedisBroker):
    """Says which thread publishes each event."""

    def publish(self, channel, data, *, event=None, key=None):
        shop.info("publishing on %s from %s", channel, threading.current_thread().name)
        return super().publish(channel, data, event=event, key=key)


def test_an_event_held_while_redis_was_away_is_relayed_later_with_the_id(
    database_url, redis_process
):
    app = Flask("relayed")
    app.config["PATTERNS_DATABASE_URL"] = database_url
    db = Database(app)
    broker = LoggingBroker(redis_process.url)
    streams = EventStreams(app, broker=broker)
    RequestIds(app)
    relay_metadata.create_all(db.engine_for(app))

    @app.post("/buy")
    def buy():
        streams.publish("orders", {"bought": 1})
        return "", 201

    try:
        with log_lines("tests.shop") as lines:
            redis_process.stop()
            response = app.test_client().post("/buy")
            assert response.status_code == 201
            redis_process.start()
            wait_for(lambda: lines.containing("The broker answers again"))
        # The relay may try more than once before Redis answers: each try's
        # line names the request.
        relayed = lines.containing("from flask-patterns-relay")
        assert relayed
        ids = {line["request_id"] for line in relayed}
        assert ids == {response.headers["X-Request-ID"]}
        assert [e.data for e in broker.replay(["orders"], 0).events] == ['{"bought":1}']
    finally:
        broker.close()
        db.engine_for(app).dispose()


class LoggingListener(Listener):
    """A stream that logs each event it is handed."""

    def push(self, event):
        shop.info("stream got %s in %s", event.data, threading.current_thread().name)
        return super().push(event)


def test_a_stream_process_delivers_an_event_with_the_id_of_its_request(redis_url):
    stream_process = RedisBroker(redis_url)
    publisher = RedisBroker(redis_url)
    listener = LoggingListener(["orders"])
    app = Flask("publisher")
    RequestIds(app)

    @app.post("/buy")
    def buy():
        publisher.publish("orders", "bought")
        return "", 201

    try:
        stream_process.subscribe(listener)
        assert stream_process.wait_until_subscribed(timeout=10)
        with log_lines("tests.shop") as lines:
            response = app.test_client().post("/buy")
            wait_for(lambda: lines.containing("stream got bought"))
        delivered = lines.one("stream got bought")
        assert "flask-patterns-subscriber" in delivered["message"]
        assert delivered["request_id"] == response.headers["X-Request-ID"]
    finally:
        stream_process.unsubscribe(listener)
        stream_process.close()
        publisher.close()
