"""The staff page: the shop's recent orders, and the outbox that delivers its
mail, with what is pending, what was given up on, and a retry for the latter.

Staff only: a visitor goes to the login form, a customer gets a 403.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import joinedload

from flask_patterns.outbox_admin import count
from flask_patterns.outbox_admin import retry_failed
from flask_patterns.outbox_admin import select_messages

from .extensions import db
from .extensions import outbox
from .logins import login_required
from .logins import staff_only
from .models import in_utc
from .models import Order
from .models import readable_utc

bp = Blueprint("staff", __name__, url_prefix="/staff")

#: How many orders and messages of each state the page lists.
SHOWN = 20
#: Outbox keys are UUIDs, as ``str(uuid.uuid4())`` writes them; nothing else
#: reaches a query (PostgreSQL refuses a NUL in the path with an error).
_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

F = t.TypeVar("F", bound=t.Callable[..., ResponseReturnValue])


def staff_required(view: F) -> F:
    """Only staff: visitors log in first, customers get a 403."""
    return login_required(staff_only("This page is for the shop's staff.")(view))


@dataclass(frozen=True)
class OutboxEntry:
    """One outbox message as the staff page shows it."""

    key: str
    kind: str
    summary: str
    attempts: int
    created_at: dt.datetime
    due_at: dt.datetime
    last_error: str | None

    @classmethod
    def from_row(cls, row: sa.Row[t.Any]) -> OutboxEntry:
        return cls(
            key=row.key,
            kind=row.kind,
            summary=_summary(row.kind, row.payload),
            attempts=row.attempts,
            created_at=in_utc(row.created_at),
            due_at=in_utc(row.available_at),
            last_error=row.last_error,
        )


def _summary(kind: str, payload: str) -> str:
    """What the message is, in a few words: a mail's recipient and subject.
    Never the body, which may hold a reset link."""
    try:
        data = json.loads(payload)
    except ValueError:
        return kind
    if kind == "mail" and isinstance(data, dict):
        return f"To {data.get('recipient', '?')}: {data.get('subject', '')}"
    return kind


bp.add_app_template_filter(readable_utc, "utc")


@bp.get("")
@staff_required
def index() -> ResponseReturnValue:
    """Recent orders of every customer, and the outbox by state."""
    orders = db.session.scalars(
        sa.select(Order)
        .options(joinedload(Order.user))
        .order_by(Order.id.desc())
        .limit(SHOWN)
    ).all()
    messages = {
        state: [
            OutboxEntry.from_row(row)
            for row in select_messages(outbox, state, limit=SHOWN)
        ]
        for state in ("pending", "failed")
    }
    counts = {state: count(outbox, state) for state in ("pending", "failed", "sent")}
    return render_template(
        "staff/index.html", orders=orders, messages=messages, counts=counts
    )


@bp.post("/outbox/retry")
@staff_required
def retry_all() -> ResponseReturnValue:
    """Make every failed message pending again, due now."""
    retried = retry_failed(outbox)
    flash(
        f"{retried} failed message{'s' if retried != 1 else ''} will be sent again."
        if retried
        else "No message had failed."
    )
    return redirect(url_for("staff.index"), 303)


@bp.post("/outbox/<key>/retry")
@staff_required
def retry(key: str) -> ResponseReturnValue:
    """Make one failed message pending again, due now."""
    if not _KEY.fullmatch(key) or not retry_failed(outbox, key):
        flash("That message is not failed (any more): nothing to retry.", "error")
    else:
        flash(f"Message {key} will be sent again.")
    return redirect(url_for("staff.index"), 303)
