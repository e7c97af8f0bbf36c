"""Running a transaction again after a serialization failure or a deadlock."""

from __future__ import annotations

import functools
import logging
import time
import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import has_request_context

from .callbacks import callback_name
from .state import database_state
from .tasks import current_unit

__all__ = ["is_transient_error", "retrying"]

log = logging.getLogger("flask_patterns.db")

_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def is_transient_error(error: BaseException) -> bool:
    """Tell whether ``error`` is a serialization failure or a deadlock, which a
    fresh attempt of the same transaction may not meet again."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    return getattr(error.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def retrying(attempts: int = 3, *, backoff: float = 0.05) -> t.Callable[[F], F]:
    """Decorate a view or a task function so that its transaction is retried
    on a serialization failure or a deadlock (PostgreSQL ``40001``/``40P01``).

    The decorated function commits its own work before returning (views only
    when the response is not vetoed); each failed attempt is rolled back with
    its callbacks, then run again after an exponential backoff.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1.")

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            for attempt in range(1, attempts + 1):
                try:
                    return _run_and_commit(func, args, kwargs)
                except sa.exc.DBAPIError as error:
                    if attempt == attempts or not is_transient_error(error):
                        raise
                    log.info("Retrying %s after %s.", callback_name(func), error.orig)
                    time.sleep(backoff * 2 ** (attempt - 1))
            raise AssertionError("unreachable")  # pragma: no cover

        return t.cast(F, wrapper)

    return decorator


def _run_and_commit(func: t.Callable[..., t.Any], args: t.Any, kwargs: t.Any) -> t.Any:
    session = current_unit().session
    try:
        result = func(*args, **kwargs)
        if has_request_context():
            result = current_app.make_response(result)
            if database_state(current_app).veto(result):
                session.rollback()
                return result
        session.commit()
    except BaseException:
        if session.in_transaction():
            session.rollback()
        raise
    return result
