"""The units of work of the current task, kept on ``g``, and ``after_commit``."""

from __future__ import annotations

import typing as t

from flask import current_app
from flask import has_app_context
from flask import has_request_context

from ..context import peek_task_state
from ..context import pop_task_state
from ..context import task_state
from .callbacks import Callback
from .callbacks import current_capture
from .callbacks import PendingCallback
from .callbacks import run_callbacks
from .state import database_state
from .unit import Boundary
from .unit import UnitOfWork

__all__ = [
    "TASK_NAMESPACE",
    "after_commit",
    "current_unit",
    "open_unit",
    "pop_units",
    "task_started",
    "units",
    "units_if_any",
]

#: The task's units live in ``task_state(TASK_NAMESPACE)``, innermost last.
TASK_NAMESPACE = "db"


def units() -> list[UnitOfWork]:
    """The current task's units of work, innermost last (created empty)."""
    return task_state(TASK_NAMESPACE, list)


def units_if_any() -> list[UnitOfWork]:
    """The current task's units, without starting the task's state."""
    return t.cast(list[UnitOfWork], peek_task_state(TASK_NAMESPACE) or [])


def pop_units() -> list[UnitOfWork]:
    """Take the current task's units away (the task is ending)."""
    return t.cast(list[UnitOfWork], pop_task_state(TASK_NAMESPACE) or [])


def task_started() -> bool:
    """Whether the current task has had a unit of work."""
    return bool(peek_task_state(TASK_NAMESPACE))


def open_unit() -> UnitOfWork | None:
    """The innermost unit of work still waiting for its decision, if any."""
    stack = units_if_any()
    if not stack or stack[-1].settled:
        return None
    return stack[-1]


def current_unit() -> UnitOfWork:
    """The current task's innermost unit of work, created on first use.

    In a request context the request boundary creates the unit; one created here
    instead (in a streamed body after the request was settled, or in a bare
    ``test_request_context``) is settled from the start: nothing commits its work
    implicitly, and ``db.transaction()`` inside it opens a real transaction.
    """
    stack = units()
    if not stack:
        in_request = has_request_context()
        stack.append(
            database_state(current_app).unit_of_work(
                Boundary.REQUEST if in_request else Boundary.TASK, settled=in_request
            )
        )
    return stack[-1]


def after_commit(func: Callback, *, robust: bool = True) -> Callback:
    """Run ``func`` after the current task's transaction commits.

    Callbacks run in registration order, after the connection went back to the
    pool. They are dropped when the transaction (or the savepoint they were
    registered in) rolls back. With no transaction open, ``func`` runs at once.
    A robust callback that raises is logged and the others still run; a callback
    registered with ``robust=False`` raises and stops the ones after it.

    Returns ``func``, so it can be used as a decorator::

        @after_commit
        def send_mail() -> None: ...

    Bind loop variables with :func:`functools.partial`, not a closure.
    """
    if not callable(func):
        raise TypeError("after_commit() needs a callable.")
    capture = current_capture()
    unit = open_unit()
    if unit is None and has_app_context() and not task_started():
        unit = current_unit()
    savepoints = frozenset(unit.savepoints) if unit else frozenset()
    callback = PendingCallback(func, robust, savepoints, capture)
    if capture is not None:
        capture.callbacks.append(callback)
    if unit is not None:
        unit.add(callback)
    elif capture is None:
        run_callbacks([callback], "with no transaction open")
    return func
