"""Django's ``captureOnCommitCallbacks`` test cases, expressed in this API. Each
runs on SQLite and PostgreSQL."""

from __future__ import annotations

from flask_patterns.db import after_commit
from flask_patterns.db import capture_on_commit_callbacks

from ..conftest import db
from .conftest import ForcedError

# captureOnCommitCallbacks


def test_capture_no_arguments(task, probe):
    with db.transaction():
        with capture_on_commit_callbacks() as callbacks:
            after_commit(probe.record(1))
        assert len(callbacks) == 1
        assert probe.ran == []
        callbacks[0]()
        assert probe.ran == [1]
    assert probe.ran == [1], "a captured callback does not run again at commit"


def test_capture_execute(task, probe):
    with db.transaction():
        with capture_on_commit_callbacks(execute=True) as callbacks:
            after_commit(probe.record(1))
        assert len(callbacks) == 1
        assert probe.ran == [1]


def test_capture_pre_callback(task, probe):
    with db.transaction():
        after_commit(probe.record("before"))
        with capture_on_commit_callbacks() as callbacks:
            after_commit(probe.record("inside"))
        assert len(callbacks) == 1
    assert probe.ran == ["before"]


def test_capture_with_rolled_back_savepoint(task, probe):
    with db.transaction(), capture_on_commit_callbacks() as callbacks:
        try:
            with db.transaction():
                after_commit(probe.record(1))
                raise ForcedError()
        except ForcedError:
            pass
    assert callbacks == []


def test_capture_execute_recursive(task, probe):
    with db.transaction():
        with capture_on_commit_callbacks(execute=True) as callbacks:
            after_commit(lambda: after_commit(probe.record("nested")))
        assert len(callbacks) == 2
        assert probe.ran == ["nested"]


def test_capture_execute_tree():
    calls: list[str] = []

    def leaf(name):
        return lambda: calls.append(name)

    leaf_1, leaf_2, leaf_3 = leaf("leaf_1"), leaf("leaf_2"), leaf("leaf_3")

    def branch_2():
        calls.append("branch_2")
        after_commit(leaf_1)
        after_commit(leaf_2)

    def branch_1():
        calls.append("branch_1")
        after_commit(branch_2)
        after_commit(leaf_3)

    with capture_on_commit_callbacks(execute=True) as callbacks:
        after_commit(branch_1)
    assert callbacks == [branch_1, branch_2, leaf_3, leaf_1, leaf_2]
    assert sorted(calls) == ["branch_1", "branch_2", "leaf_1", "leaf_2", "leaf_3"]


def test_capture_execute_robust(caplog):
    def hook():
        raise ForcedError("robust callback")

    with capture_on_commit_callbacks(execute=True) as callbacks:
        after_commit(hook)
    assert callbacks == [hook]
    assert "Error calling" in caplog.text
    assert "hook" in caplog.text


def test_capture_sees_callbacks_of_a_request_without_running_them(app, probe):
    @app.post("/")
    def view():
        probe.write("a")
        after_commit(probe.record("mail"))
        return "ok"

    with capture_on_commit_callbacks() as callbacks:
        app.test_client().post("/")
    assert probe.rows() == ["a"]
    assert probe.ran == []
    assert len(callbacks) == 1
