"""The outbox on SQLite and PostgreSQL: written with the data, delivered after the
commit, retried with backoff, claimed by one deliverer at a time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from flask_patterns import outbox as outbox_module
from flask_patterns.outbox import Outbox
from flask_patterns.outbox import outbox_table

from .conftest import db
from .conftest import Flaky
from .conftest import insert
from .conftest import rows


def test_a_message_is_written_with_the_data_and_delivered_after_the_commit(
    app, probe, outbox
):
    with app.app_context():
        probe.write("order")
        key = outbox.add("mail", {"to": "ada@example.com"})
        assert outbox.delivered == []
    assert outbox.delivered == [({"to": "ada@example.com"}, key, 1)]
    (row,) = rows(app)
    assert row.sent_at is not None
    assert row.claimed_until is None
    assert probe.rows() == ["order"]


def test_a_rolled_back_task_leaves_no_message(app, probe, outbox):
    with pytest.raises(Flaky), app.app_context():
        probe.write("order")
        outbox.add("mail", {"to": "ada@example.com"})
        raise Flaky()
    assert rows(app) == []
    assert outbox.delivered == []


def test_a_failed_delivery_is_retried_later_with_backoff(app, outbox, clock, caplog):
    outbox.failures = 2
    with app.app_context():
        outbox.add("mail", {"n": 1})
    (row,) = rows(app)
    assert row.sent_at is None
    assert row.attempts == 1
    assert "Flaky" in row.last_error
    with app.app_context():
        assert outbox.work() == 0, "not due yet"
        clock(2.5)  # first backoff: 2 s +- 20 %
        assert outbox.work() == 0, "fails again"
        clock(2.5)
        assert outbox.work() == 0, "second backoff is 4 s +- 20 %"
        clock(2.5)
        assert outbox.work() == 1
    assert [attempts for _, _, attempts in outbox.delivered] == [3]
    assert "'mail' fail to deliver" in caplog.text
    assert "'mail' deliver again after" in caplog.text


def test_a_message_that_keeps_failing_is_given_up_and_logged(
    app, outbox, clock, caplog
):
    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 2
    outbox.failures = 5
    with app.app_context():
        outbox.add("mail", {"n": 1})
        clock(10)
        outbox.work()
        clock(1000)
        assert outbox.work() == 0
        assert outbox.pending() == 0
    (row,) = rows(app)
    assert row.failed_at is not None
    assert row.attempts == 2
    assert "Giving up" in caplog.text


def test_only_one_deliverer_gets_a_message(app, outbox):
    insert(app, "k1", "mail", "{}")
    with app.app_context():
        first = outbox._claim(outbox_table.c.key == "k1")
        second = outbox._claim(outbox_table.c.key == "k1")
        assert first is not None
        assert second is None
        assert outbox.deliver("k1") is False
        assert outbox.work() == 0


def test_a_claim_left_by_a_dead_process_expires(app, outbox, clock):
    insert(app, "k1", "mail", '{"n": 1}', at=outbox_module._now())
    with app.app_context():
        assert outbox._claim(outbox_table.c.key == "k1") is not None  # then "dies"
        assert outbox.work() == 0
        clock(app.config["PATTERNS_OUTBOX_LEASE"] + 1)
        assert outbox.work() == 1
    assert outbox.delivered == [({"n": 1}, "k1", 2)]


def test_a_sent_message_is_never_sent_again(app, outbox, clock):
    with app.app_context():
        key = outbox.add("mail", {"n": 1})
    with app.app_context():
        clock(10_000)
        assert outbox.work() == 0
        assert outbox.deliver(key) is False
    assert len(outbox.delivered) == 1


def test_unknown_kinds_are_refused(app, outbox):
    with app.app_context(), pytest.raises(LookupError, match="No outbox handler"):
        outbox.add("sms", {})
    insert(app, "k2", "fax", "{}")
    with app.app_context():
        assert outbox.work() == 0
    (row,) = rows(app)
    assert "No outbox handler for 'fax'" in row.last_error


def test_cli_delivers_what_is_due_and_reports_the_backlog(app, outbox):
    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"n": 1})
    runner = app.test_cli_runner()
    status = runner.invoke(args=["outbox", "status"]).output
    assert status.startswith("1 message(s) pending, the oldest for ")
    with app.app_context():
        db.session.execute(outbox_table.update().values(available_at=sa.func.now()))
    result = runner.invoke(args=["outbox", "work", "--once"])
    assert result.exit_code == 0, result.output
    assert "Delivered 1 message(s)." in result.output
    assert runner.invoke(args=["outbox", "status"]).output == "0 message(s) pending.\n"


def test_outbox_is_registered_once(app, outbox):
    with pytest.raises(RuntimeError, match="already registered"):
        Outbox(app, db=db)


def test_adding_a_message_without_an_open_transaction_is_refused(app, outbox):
    with (
        app.test_request_context(),
        pytest.raises(RuntimeError, match="open transaction"),
    ):
        outbox.add("mail", {})
    assert rows(app) == []


def test_messages_of_an_unavailable_handler_wait_unclaimed_and_then_go_out(app, outbox):
    transport = {"configured": False}

    @outbox.handler("mail", available=lambda: transport["configured"])
    def send(message):
        outbox.delivered.append((message.payload, message.key, message.attempts))

    with app.app_context():
        key = outbox.add("mail", {"n": 1})
    with app.app_context():
        assert outbox.work() == 0
        assert outbox.deliver(key) is False
        assert outbox.pending() == 1
        assert outbox.held_kinds() == ["mail"]
    (row,) = rows(app)
    assert (row.attempts, row.claimed_until, row.last_error) == (0, None, None)
    status = app.test_cli_runner().invoke(args=["outbox", "status"]).output
    assert status.startswith("1 message(s) pending, the oldest for ")
    assert status.endswith("\nHeld until their handler is available: mail.\n")

    transport["configured"] = True
    with app.app_context():
        assert outbox.held_kinds() == []
        assert outbox.work() == 1
    assert outbox.delivered == [({"n": 1}, key, 1)]


def test_a_held_kind_does_not_hold_the_others(app, outbox):
    @outbox.handler("sms", available=lambda: False)
    def send_sms(message):
        raise AssertionError("never called while unavailable")

    insert(app, "k-sms", "sms", "{}")
    insert(app, "k-mail", "mail", '{"n": 2}')
    with app.app_context():
        assert outbox.work() == 1
        assert outbox.pending() == 1
    assert [payload for payload, _, _ in outbox.delivered] == [{"n": 2}]
