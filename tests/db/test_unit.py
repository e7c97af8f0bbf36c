"""The unit of work and its session: explicit commits, callback failures,
signals."""

from __future__ import annotations

from flask_patterns.db import after_commit
from flask_patterns.db import committed
from flask_patterns.db import rolled_back

from ..conftest import db


def test_explicit_commit_in_a_view_runs_callbacks_then_later_work_can_roll_back(
    app, probe
):
    @app.post("/")
    def view():
        probe.write("kept")
        after_commit(probe.record("kept"))
        db.session.commit()
        probe.write("dropped")
        after_commit(probe.record("dropped"))
        return "validation failed", 422

    assert app.test_client().post("/").status_code == 422
    assert probe.rows() == ["kept"]
    assert probe.ran == ["kept"]


def test_robust_callback_failure_is_logged_and_never_turns_into_a_500(
    app, probe, caplog
):
    def broken():
        raise ValueError("smtp down")

    @app.post("/")
    def view():
        probe.write("a")
        after_commit(broken)
        after_commit(probe.record("after"))
        return "ok"

    assert app.test_client().post("/").status_code == 200
    assert probe.rows() == ["a"]
    assert probe.ran == ["after"]
    assert "Error calling" in caplog.text
    assert "broken" in caplog.text


def test_non_robust_callback_failure_propagates_after_the_commit(app, probe):
    def broken():
        raise ValueError("smtp down")

    @app.post("/")
    def view():
        probe.write("a")
        after_commit(broken, robust=False)
        after_commit(probe.record("skipped"))
        return "ok"

    assert app.test_client().post("/").status_code == 500
    assert probe.rows() == ["a"]
    assert probe.ran == []


def test_signals_report_commits_and_rollbacks(views, probe):
    events = []

    def on_commit(sender):
        events.append(("committed", sender.name))

    def on_rollback(sender):
        events.append(("rolled back", sender.name))

    with committed.connected_to(on_commit), rolled_back.connected_to(on_rollback):
        client = views.test_client()
        client.post("/ok")
        client.post("/abort")
    assert events == [("committed", views.name), ("rolled back", views.name)]
