"""State bound to the current task, and helpers to run code as a task.

A *task* is one application context: a request, a ``flask`` CLI command, a
``with app.app_context():`` block, or a job run by :func:`run_in_task`. Extensions
keep their per-task state on :data:`flask.g` under one private name, so they never
collide with the application's own attributes.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import g
from flask import has_app_context

__all__ = ["peek_task_state", "pop_task_state", "run_in_task", "task_state"]

_NAMESPACE = "_flask_patterns"

T = t.TypeVar("T")
P = t.ParamSpec("P")


def _namespace() -> dict[str, t.Any]:
    # One look at ``g`` (a context-local proxy) per call: this runs several
    # times in every request.
    try:
        namespace: dict[str, t.Any] = g.setdefault(_NAMESPACE, {})
    except RuntimeError:
        if has_app_context():
            raise
        raise RuntimeError(
            "Working outside of a task: push an application context first,"
            " for example with 'with app.app_context():' or run_in_task()."
        ) from None
    return namespace


def task_state(key: str, factory: t.Callable[[], T]) -> T:
    """Return the current task's state stored under ``key``, created by ``factory``
    on first use.

    :param key: a name private to the caller, such as ``"db"``.
    :param factory: called without arguments when the task has no state yet.
    :raises RuntimeError: outside of an application context.
    """
    namespace = _namespace()
    if key not in namespace:
        namespace[key] = factory()
    return t.cast(T, namespace[key])


def _namespace_if_any() -> dict[str, t.Any]:
    """The current task's namespace, or an empty one outside of a task."""
    try:
        namespace: dict[str, t.Any] = g.get(_NAMESPACE, {})
    except RuntimeError:
        if has_app_context():
            raise
        return {}
    return namespace


def peek_task_state(key: str) -> t.Any | None:
    """Return the current task's state under ``key``, or ``None`` if there is none
    or no task is active. Never creates anything."""
    return _namespace_if_any().get(key)


def pop_task_state(key: str) -> t.Any | None:
    """Remove and return the current task's state under ``key``.

    Teardown handlers use this so that running them twice (as Flask 3.1 does
    around ``stream_with_context``) finds nothing the second time.
    """
    return _namespace_if_any().pop(key, None)


def run_in_task(
    app: Flask, func: t.Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Call ``func`` as one task of ``app``: inside a fresh application context, so
    that extensions such as :class:`~flask_patterns.db.Database` commit its work when
    it returns and roll it back when it raises.

    Use it in worker processes and threads, one call per job::

        for job in queue:
            run_in_task(app, handle, job)
    """
    with app.app_context():
        return func(*args, **kwargs)
