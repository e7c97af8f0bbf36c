"""Where tasks end: the request boundary, which commits before the response
leaves the app, and the end of the application context."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.wrappers import Response

from .state import database_state
from .tasks import pop_units
from .tasks import units
from .tasks import units_if_any
from .unit import Boundary
from .unit import UnitOfWork

__all__ = [
    "begin_request",
    "clean_exit",
    "settle_request",
    "teardown_request",
    "teardown_task",
]

log = logging.getLogger("flask_patterns.db")


def clean_exit(error: BaseException | None) -> bool:
    """Whether a task that ended with ``error`` ended cleanly: no error, or a
    zero exit (``SystemExit(0)``, click's ``Exit(0)``)."""
    if error is None:
        return True
    if isinstance(error, SystemExit):
        return error.code in (None, 0)
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code == 0
    return False


def begin_request() -> None:
    state = database_state(current_app)
    units().append(state.unit_of_work(Boundary.REQUEST, veto=True))


def _request_unit() -> UnitOfWork | None:
    for unit in reversed(units_if_any()):
        if unit.boundary is Boundary.REQUEST:
            return unit
    return None


def settle_request(response: Response) -> Response:
    """Commit the request's work before the response leaves the app, unless the
    response is vetoed or the task was marked for rollback. A failed commit
    raises here, so Flask turns it into a 500 through the app's error handlers."""
    unit = _request_unit()
    if unit is None or unit.settled:
        return response
    veto = unit.veto or database_state(current_app).veto
    if unit.rollback_only:
        unit.rollback()
    elif veto(response):
        unit.vetoed = True
        unit.rollback()
    else:
        unit.commit()
    return response


def teardown_request(error: BaseException | None) -> None:
    """Discard the request's units (and any left inside them); never raises."""
    stack = units_if_any()
    starts = [i for i, unit in enumerate(stack) if unit.boundary is Boundary.REQUEST]
    if not starts:
        return
    leftovers = stack[starts[-1] :]
    del stack[starts[-1] :]
    for leftover in reversed(leftovers):
        leftover.discard()


def teardown_task(error: BaseException | None) -> None:
    """End the task: commit a plain task that exited cleanly, roll back the rest,
    release every connection. A failed commit is raised after the cleanup, so the
    ``with`` block or CLI command that owned the task fails instead of losing
    data silently."""
    failure: BaseException | None = None
    for unit in reversed(pop_units()):
        if unit.boundary is not Boundary.TASK or unit.settled:
            unit.discard()
            continue
        if clean_exit(error) and not unit.rollback_only:
            try:
                unit.commit()
            except Exception as exc:
                log.exception("Committing the task's transaction failed.")
                failure = exc
        else:
            unit.rollback()
    if failure is not None:
        raise failure
