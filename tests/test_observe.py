"""What observers are told about units of work and the outbox, on SQLite and
PostgreSQL, and the registry itself."""

from __future__ import annotations

import json

import pytest
from flask import abort

from flask_patterns import observe
from flask_patterns.db import after_commit

from .conftest import child
from .conftest import db
from .conftest import item
from .conftest import rows
from .observing import Recorder
from .observing import recording


@pytest.fixture
def recorder():
    with recording() as recorder:
        yield recorder


@pytest.fixture
def views(app):
    @app.post("/write/<int:status>")
    def write(status):
        db.session.execute(item.insert().values(name="written"))
        if status >= 400:
            abort(status)
        return "", status

    @app.post("/nothing")
    def nothing():
        return ""

    @app.post("/marked")
    def marked():
        db.session.execute(item.insert().values(name="marked"))
        db.set_rollback()
        return ""

    @app.post("/dangling")
    def dangling():
        db.session.execute(child.insert().values(item_id=999))
        return ""

    @app.post("/twice")
    def twice():
        db.session.execute(item.insert().values(name="first"))
        db.session.commit()
        db.session.execute(item.insert().values(name="second"))
        return ""

    return app.test_client()


def outcomes(recorder):
    return [outcome for outcome, _ in recorder.of("transaction")]


def test_a_committed_request_is_told_once_with_its_commit_time(views, recorder):
    assert views.post("/write/200").status_code == 200
    ((outcome, seconds),) = recorder.of("transaction")
    assert outcome == "commit"
    assert 0 < seconds < 5


def test_a_vetoed_request_is_told_as_a_veto(views, recorder, probe):
    assert views.post("/write/409").status_code == 409
    assert recorder.of("transaction") == [("veto", None)]
    assert probe.rows() == []


def test_a_request_marked_for_rollback_is_told_as_a_rollback(views, recorder):
    views.post("/marked")
    assert recorder.of("transaction") == [("rollback", None)]


def test_a_request_that_never_touched_the_database_tells_nothing(views, recorder):
    views.post("/nothing")
    assert recorder.of("transaction") == []


def test_a_failed_commit_is_told_as_an_error_and_not_again_as_a_rollback(
    views, recorder
):
    assert views.post("/dangling").status_code == 500
    assert outcomes(recorder) == ["error"]
    assert recorder.of("transaction")[0][1] > 0


def test_each_commit_of_a_request_is_told(views, recorder, probe):
    views.post("/twice")
    assert outcomes(recorder) == ["commit", "commit"]
    assert probe.rows() == ["first", "second"]


def test_a_block_that_raises_is_told_as_a_rollback(app, recorder):
    with app.app_context():
        with pytest.raises(ZeroDivisionError), db.transaction() as session:
            session.execute(item.insert().values(name="lost"))
            raise ZeroDivisionError
        with db.transaction() as session:
            session.execute(item.insert().values(name="kept"))
    assert outcomes(recorder) == ["rollback", "commit"]


def test_the_commit_and_each_callback_run_inside_their_spans(app, recorder):
    def send_mail():
        recorder._tell("ran", "send_mail")

    with app.app_context(), db.transaction() as session:
        session.execute(item.insert().values(name="x"))
        after_commit(send_mail)
    names = [(report[0], report[1]) for report in recorder.told]
    assert names == [
        ("span", "flask_patterns.db.commit"),
        ("done", "flask_patterns.db.commit"),
        ("transaction", "commit"),
        ("span", "flask_patterns.after_commit"),
        ("ran", "send_mail"),
        ("done", "flask_patterns.after_commit"),
    ]
    callback_span = recorder.told[3]
    assert callback_span[2] == {"callback": send_mail.__qualname__}


@pytest.mark.parametrize("robust", [True, False])
def test_a_failing_callback_is_told_with_its_name(app, recorder, robust):
    def broken():
        raise RuntimeError("no mail server")

    with app.app_context():
        if robust:
            with db.transaction():
                after_commit(broken)
        else:
            with pytest.raises(RuntimeError), db.transaction():
                after_commit(broken, robust=False)
    assert recorder.of("after_commit_failed") == [
        (broken.__qualname__, "no mail server")
    ]
    assert ("failed", "flask_patterns.after_commit", "RuntimeError") in recorder.told


def test_outbox_messages_carry_the_context_they_were_written_in(
    app, outbox, clock, recorder
):
    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"to": "ada"})
    (row,) = rows(app)
    assert json.loads(row.context) == {"origin": "test"}
    assert recorder.of("outbox") == [("mail", "retry")]
    # The worker delivers it later, as part of the task that wrote it.
    observe.remove_observer(recorder)
    clock(60)
    with recording("worker") as worker, app.app_context():
        assert outbox.work() == 1
    assert worker.of("outbox") == [("mail", "sent")]
    assert (
        "resumed",
        "flask_patterns.outbox.deliver",
        {"origin": "test"},
        {"kind": "mail"},
    ) in worker.told


def test_an_outbox_message_given_up_is_told_as_failed(app, outbox, recorder):
    app.config["PATTERNS_OUTBOX_MAX_ATTEMPTS"] = 1
    outbox.failures = 1
    with app.app_context():
        outbox.add("mail", {"to": "ada"})
    assert recorder.of("outbox") == [("mail", "failed")]


def test_a_message_written_while_nothing_observes_carries_nothing(app, outbox):
    with app.app_context():
        outbox.add("mail", {})
    assert rows(app)[0].context is None


def test_an_observer_is_added_once_and_removed_whatever_its_state():
    recorder = Recorder()
    observe.add_observer(recorder)
    observe.add_observer(recorder)
    try:
        assert observe.observers().count(recorder) == 1
        observe.transaction_ended("commit", 0.1)
        assert recorder.of("transaction") == [("commit", 0.1)]
    finally:
        observe.remove_observer(recorder)
    observe.remove_observer(recorder)
    assert recorder not in observe.observers()


def test_with_no_observer_spans_and_carry_cost_nothing(monkeypatch):
    monkeypatch.setattr(observe, "_observers", ())
    assert observe.carry() is None
    assert observe.span("x") is observe.resumed("y", {"a": "b"})


def test_carried_values_of_several_observers_are_merged():
    with recording("first"), recording("second") as second:
        second.carry = lambda: {"trace": "t1"}  # type: ignore[method-assign]
        assert observe.carry() == {"origin": "first", "trace": "t1"}
