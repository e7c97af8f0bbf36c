"""Django's ``on_commit`` test cases, expressed in this API (``atomic()`` is
``db.transaction()``, an inner ``atomic()`` a savepoint), and a property test of
the unit of work's invariants. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import itertools

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from flask_patterns.db import after_commit

from ..conftest import db
from ..conftest import item
from .conftest import ForcedError


def test_executes_immediately_if_no_transaction(app, probe):
    after_commit(probe.record(1))
    assert probe.ran == [1]
    with app.app_context(), db.transaction():
        after_commit(lambda: after_commit(probe.record(3)))
        after_commit(probe.record(2))
    # A callback registered by a callback finds no transaction open: runs at once.
    assert probe.ran == [1, 3, 2]


def test_robust_if_no_transaction(probe, caplog):
    def robust_callback():
        raise ForcedError("robust callback")

    after_commit(robust_callback)
    after_commit(probe.record(1))
    assert probe.ran == [1]
    assert "Error calling" in caplog.text
    assert "robust_callback" in caplog.text
    assert "with no transaction open" in caplog.text
    assert caplog.records[0].levelname == "ERROR"


def test_robust_transaction(task, do, probe, caplog):
    def robust_callback():
        raise ForcedError("robust callback")

    with db.transaction():
        after_commit(robust_callback)
        do(1)
    assert probe.ran == [1]
    assert probe.rows() == ["1"]
    assert "robust_callback" in caplog.text
    assert "after the transaction committed" in caplog.text


@pytest.mark.parametrize("robust", [True, False])
def test_partial_callbacks_are_named_by_their_function_in_the_log(
    probe, caplog, robust
):
    def failing(secret, value):
        raise ForcedError(value)

    callback = functools.partial(functools.partial(failing, "private"), "x")
    if robust:
        after_commit(callback)
        assert f"Error calling {failing.__qualname__} in" in caplog.text
        assert "private" not in caplog.messages[0]
    else:
        with pytest.raises(ForcedError):
            after_commit(callback, robust=False)


def test_delays_execution_until_after_transaction_commit(task, do, probe, assert_done):
    with db.transaction():
        do(1)
        assert probe.ran == []
    assert_done([1])


def test_does_not_execute_if_transaction_rolled_back(task, do, assert_done):
    with pytest.raises(ForcedError), db.transaction():
        do(1)
        raise ForcedError()
    assert_done([])


def test_executes_only_after_final_transaction_committed(task, do, probe, assert_done):
    with db.transaction():
        with db.transaction():
            do(1)
            assert probe.ran == []
        assert probe.ran == []
    assert_done([1])


def test_discards_hooks_from_rolled_back_savepoint(task, do, assert_done):
    with db.transaction():
        with db.transaction():
            do(1)
        try:
            with db.transaction():
                do(2)
                raise ForcedError()
        except ForcedError:
            pass
        with db.transaction():
            do(3)
    assert_done([1, 3])


def test_no_hooks_run_from_failed_transaction(task, do, assert_done):
    with pytest.raises(ForcedError), db.transaction():
        with db.transaction():
            do(1)
        raise ForcedError()
    assert_done([])


def test_inner_savepoint_rolled_back_with_outer(task, do, assert_done):
    with db.transaction():
        try:
            with db.transaction():
                with db.transaction():
                    do(1)
                raise ForcedError()
        except ForcedError:
            pass
        do(2)
    assert_done([2])


def test_marked_for_rollback_runs_nothing(task, do, assert_done):
    # Django's atomic(savepoint=False) failing marks the whole transaction for
    # rollback; here that mark is db.set_rollback().
    with db.transaction():
        do(1)
        try:
            db.set_rollback()
            raise ForcedError()
        except ForcedError:
            pass
    assert_done([])


def test_inner_savepoint_does_not_affect_outer(task, do, assert_done):
    with db.transaction():
        with db.transaction():
            do(1)
        try:
            with db.transaction():
                raise ForcedError()
        except ForcedError:
            pass
    assert_done([1])


def test_runs_hooks_in_order_registered(task, do, assert_done):
    with db.transaction():
        do(1)
        with db.transaction():
            do(2)
        do(3)
    assert_done([1, 2, 3])


def test_hooks_cleared_after_successful_commit(task, do, assert_done):
    with db.transaction():
        do(1)
    with db.transaction():
        do(2)
    assert_done([1, 2])


def test_hooks_cleared_after_rollback(task, do, assert_done):
    try:
        with db.transaction():
            do(1)
            raise ForcedError()
    except ForcedError:
        pass
    with db.transaction():
        do(2)
    assert_done([2])


def test_hooks_cleared_on_reconnect(task, do, assert_done):
    with db.transaction():
        do(1)
        db.session.close()
        do(2)
    assert_done([2])


def test_error_in_hook_doesnt_prevent_clearing_hooks(task, do, probe, assert_done):
    with pytest.raises(ForcedError), db.transaction():
        after_commit(lambda: (_ for _ in ()).throw(ForcedError()), robust=False)
    with db.transaction():
        do(1)
    assert_done([1])


def test_db_query_in_hook(task, do, probe):
    seen = []
    with db.transaction():
        probe.write("a")
        after_commit(lambda: seen.append(db.session.scalar(sa.select(item.c.name))))
    assert seen == ["a"]


def test_transaction_in_hook(task, probe):
    def on_commit():
        with db.transaction():
            probe.write("in hook")

    with db.transaction():
        after_commit(on_commit)
    assert probe.rows() == ["in hook"]


def test_hook_in_hook(task, probe, assert_done):
    def on_commit(number, add_hook):
        with db.transaction():
            if add_hook:
                after_commit(functools.partial(on_commit, number + 10, False))
            probe.write(str(number))
            probe.ran.append(number)

    with db.transaction():
        after_commit(functools.partial(on_commit, 1, True))
        after_commit(functools.partial(on_commit, 2, True))
    assert_done([1, 11, 2, 12])


def test_raises_exception_non_callable():
    with pytest.raises(TypeError, match="callable"):
        after_commit(None)  # type: ignore[arg-type]


# Property: random writes, savepoints and outcomes keep the three invariants.

WRITE = "write"
plans = st.lists(
    st.recursive(
        st.just(WRITE),
        lambda children: st.tuples(
            st.sampled_from(["release", "rollback"]), st.lists(children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=5,
)


class RollbackSavepoint(Exception):
    pass


def execute(plan, numbers, probe):
    for node in plan:
        if node == WRITE:
            number = next(numbers)
            probe.write(str(number))
            after_commit(probe.record(number))
            continue
        kind, children = node
        try:
            with db.savepoint():
                execute(children, numbers, probe)
                if kind == "rollback":
                    raise RollbackSavepoint()
        except RollbackSavepoint:
            pass


def surviving(plan, numbers):
    kept = []
    for node in plan:
        if node == WRITE:
            kept.append(next(numbers))
            continue
        kind, children = node
        inner = surviving(children, numbers)
        if kind == "release":
            kept += inner
    return kept


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=plans,
    boundary=st.sampled_from(["request", "task"]),
    outcome=st.sampled_from(["commit", "veto", "raise"]),
)
def test_unit_of_work_invariants(app, probe, plan, boundary, outcome):
    probe.clear()

    def work():
        execute(plan, itertools.count(1), probe)
        if outcome == "raise":
            raise ForcedError()
        if outcome == "veto":
            if boundary == "task":
                db.set_rollback()
            return "vetoed", 409
        return "ok"

    # Register the view once, before the app's first request; each example
    # swaps in its own plan.
    if "plan" not in app.view_functions:
        app.add_url_rule(
            "/plan", "plan", lambda: app.config["PLAN"](), methods=["POST"]
        )
    app.config["PLAN"] = work
    if boundary == "request":
        app.test_client().post("/plan")
    else:
        try:
            with app.app_context():
                work()
        except ForcedError:
            pass

    expected = surviving(plan, itertools.count(1)) if outcome == "commit" else []
    assert probe.rows() == [str(n) for n in expected]
    assert probe.ran == expected
    assert probe.checked_out() == 0
