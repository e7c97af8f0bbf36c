"""One log line when something starts failing and one when it works again: the
event subscriber through a Redis restart, streams that cannot replay while
Redis is away, an outbox kind whose deliveries fail."""

from __future__ import annotations

import logging
import threading
import uuid

from conftest import wait_for

from flask_patterns._outage import Outage
from flask_patterns._outage import Outages
from flask_patterns.streams import RedisBroker

from .conftest import insert
from .streams.conftest import open_stream
from .streams.conftest import redis_stream_app

log = logging.getLogger("tests.outage")


def warnings(caplog, text):
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and text in r.getMessage()
    ]


def test_an_outage_logs_its_first_failure_and_its_end_once_from_many_threads(caplog):
    outage = Outage(log, "The thing fails", "The thing works again")
    caplog.set_level(logging.WARNING, "tests.outage")
    assert outage.ended() is False, "no outage, no line"
    starts = []

    def fail_often():
        for n in range(100):
            if outage.failed(ConnectionError(f"refused {n}")):
                starts.append(n)

    threads = [threading.Thread(target=fail_often) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outage.ongoing
    assert outage.ended() is True
    assert outage.ended() is False
    assert len(starts) == 1
    first, last = caplog.messages
    assert first.startswith("The thing fails: refused ")
    assert last.startswith("The thing works again after ")
    assert last.endswith(" s and 800 failed attempts.")


def test_the_outages_of_objects_are_forgotten_with_them():
    outages: Outages[object] = Outages(log, "{!r} fails", "{!r} works", weak=True)

    class Owner:
        def __repr__(self):
            return "the owner"

    owner = Owner()
    assert outages[owner] is outages[owner]
    assert outages[owner].started == "the owner fails"
    del owner
    assert len(outages._by_key) == 0


def test_a_redis_away_for_several_retries_is_one_lost_line_and_one_back_line(
    redis_process, caplog
):
    caplog.set_level(logging.DEBUG, "flask_patterns.streams")
    broker = RedisBroker(redis_process.url)
    try:
        broker.subscriber.start()
        assert broker.wait_until_subscribed(timeout=10)
        redis_process.stop()
        wait_for(lambda: len(retries(caplog)) >= 4, 20.0)
        redis_process.start()
        assert broker.wait_until_subscribed(timeout=20)
        wait_for(lambda: warnings(caplog, "back on Redis"), 20.0)
    finally:
        broker.close()
    (lost,) = warnings(caplog, "lost Redis")
    (back,) = warnings(caplog, "back on Redis")
    assert "Connection" in lost or "Error" in lost, lost
    failed = int(back.split(" and ")[1].split()[0])
    assert failed >= len(retries(caplog)) >= 4, back


def retries(caplog):
    return [r for r in caplog.records if "subscriber retrying" in r.getMessage()]


def test_twenty_streams_that_cannot_replay_while_redis_is_away_log_one_line(
    tmp_path, redis_process, caplog
):
    app, broker = redis_stream_app(tmp_path, redis_process.url)
    caplog.set_level(logging.WARNING, "flask_patterns.streams")
    try:
        redis_process.stop()
        for _ in range(20):
            reader = open_stream(app, "/streams/activity", **{"Last-Event-ID": "e-1"})
            (hint,) = reader.rest()
            assert hint.startswith(b"retry: ")
            reader.close()
        assert len(warnings(caplog, "could not replay its history")) == 1
        redis_process.start()
        reader = open_stream(app, "/streams/activity", **{"Last-Event-ID": "e-1"})
        assert reader.events(1)[0]["event"] == "reset", "replayed: an unknown id"
        reader.close()
    finally:
        broker.close()
    (back,) = warnings(caplog, "Streams replay their history again")
    assert back.endswith(" and 20 failed attempts."), back
    assert len(warnings(caplog, "could not replay its history")) == 1


def test_an_outbox_kind_failing_for_fifty_messages_is_one_warning(
    app, outbox, clock, caplog
):
    caplog.set_level(logging.DEBUG, "flask_patterns.outbox")
    outbox.failures = 50
    for n in range(50):
        insert(app, str(uuid.uuid4()), "mail", f'{{"n": {n}}}')
    clock(1)  # past the moment they were written
    with app.app_context():
        assert outbox.work() == 0
        clock(10)  # every message is due again
        assert outbox.work() == 50
    outbox_warnings = warnings(caplog, "Outbox")
    assert outbox_warnings == [
        "Outbox messages of kind 'mail' fail to deliver; retrying with backoff:"
        " smtp down (49 more)",
        outbox_warnings[1],
    ]
    assert outbox_warnings[1].startswith("Outbox messages of kind 'mail' deliver again")
    assert outbox_warnings[1].endswith(" s and 50 failed attempts.")
    details = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(details) == 50, "each attempt at DEBUG, with its message"
    assert "failed, attempt 1, next in" in details[0].getMessage()


def test_each_message_given_up_is_still_an_error(app, outbox, clock, caplog):
    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 1
    outbox.failures = 3
    for n in range(3):
        insert(app, str(uuid.uuid4()), "mail", f'{{"n": {n}}}')
    clock(1)
    with app.app_context():
        outbox.work()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert all("Giving up" in r.getMessage() for r in errors)
    assert len(warnings(caplog, "fail to deliver")) == 1
