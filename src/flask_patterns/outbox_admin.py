"""Looking after an outbox: messages by state, retrying the ones given up on,
purging the sent ones past their retention, and the ``flask outbox`` commands
that do it."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import click
import sqlalchemy as sa

from . import outbox as _outbox
from .outbox import Outbox
from .outbox import outbox_table

__all__ = [
    "STATES",
    "add_admin_commands",
    "count",
    "oldest_pending_age",
    "purge_sent",
    "retry_failed",
    "select_messages",
]

#: The states a message is in: waiting for delivery, given up on, delivered.
STATES = ("pending", "failed", "sent")


def _in_state(state: str) -> sa.ColumnElement[bool]:
    c = outbox_table.c
    if state == "pending":
        return sa.and_(c.sent_at.is_(None), c.failed_at.is_(None))
    if state == "failed":
        return c.failed_at.is_not(None)
    if state == "sent":
        return c.sent_at.is_not(None)
    raise ValueError(f"Unknown state {state!r}: one of {', '.join(STATES)}.")


def _now() -> dt.datetime:
    """The outbox's own clock, so that due times compare with its own."""
    return _outbox._now()


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def select_messages(
    outbox: Outbox, state: str | None = None, *, key: str | None = None, limit: int = 50
) -> list[sa.Row[t.Any]]:
    """The messages in ``state`` (every state if ``None``), or the one with
    ``key``, newest first."""
    query = sa.select(outbox_table).order_by(outbox_table.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(_in_state(state))
    if key is not None:
        query = query.where(outbox_table.c.key == key)
    with outbox.db.transaction() as session:
        return list(session.execute(query))


def retry_failed(outbox: Outbox, key: str | None = None) -> int:
    """Make the failed messages (only ``key`` if given) pending again, due now,
    with their attempts counted from zero; returns how many."""
    update = (
        outbox_table.update()
        .where(_in_state("failed"))
        .values(failed_at=None, attempts=0, available_at=_now(), claimed_until=None)
    )
    if key is not None:
        update = update.where(outbox_table.c.key == key)
    with outbox.db.transaction() as session:
        return _rowcount(session.execute(update))


def purge_sent(outbox: Outbox, older_than: dt.timedelta) -> int:
    """Delete the messages sent more than ``older_than`` ago; returns how many."""
    delete = outbox_table.delete().where(outbox_table.c.sent_at < _now() - older_than)
    with outbox.db.transaction() as session:
        return _rowcount(session.execute(delete))


def count(outbox: Outbox, state: str) -> int:
    """How many messages are in ``state``."""
    query = sa.select(sa.func.count()).select_from(outbox_table).where(_in_state(state))
    with outbox.db.transaction() as session:
        return int(session.scalar(query) or 0)


def _rowcount(result: sa.Result[t.Any]) -> int:
    return int(t.cast("sa.CursorResult[t.Any]", result).rowcount)


def oldest_pending_age(outbox: Outbox) -> dt.timedelta | None:
    """How long the oldest pending message has waited, or ``None``."""
    oldest_created = sa.func.min(outbox_table.c.created_at)
    query = sa.select(oldest_created).where(_in_state("pending"))
    with outbox.db.transaction() as session:
        oldest = session.scalar(query)
    return None if oldest is None else _now() - _aware(oldest)


def _state_of(row: sa.Row[t.Any]) -> str:
    if row.sent_at is not None:
        return "sent"
    return "failed" if row.failed_at is not None else "pending"


def add_admin_commands(group: click.Group, outbox: Outbox) -> None:
    """Add ``list``, ``show``, ``retry`` and ``purge`` to ``flask outbox``."""

    @group.command("list")
    @click.option("--state", type=click.Choice(STATES), help="Only this state.")
    @click.option("--limit", default=50, show_default=True)
    def list_messages(state: str | None, limit: int) -> None:
        """List messages, newest first: key, state, kind, attempts, created."""
        for row in select_messages(outbox, state, limit=limit):
            click.echo(
                f"{row.key}  {_state_of(row):7}  {row.kind}  attempts={row.attempts}"
                f"  created={_aware(row.created_at).isoformat(timespec='seconds')}"
            )

    @group.command("show")
    @click.argument("key")
    def show(key: str) -> None:
        """Show one message, its payload and its last error."""
        rows = select_messages(outbox, key=key, limit=1)
        if not rows:
            raise click.ClickException(f"No outbox message {key}.")
        (row,) = rows
        click.echo(f"key: {row.key}\nstate: {_state_of(row)}\nkind: {row.kind}")
        click.echo(f"attempts: {row.attempts}\nlast error: {row.last_error or '-'}")
        click.echo(f"payload: {json.dumps(json.loads(row.payload), indent=2)}")

    @group.command("retry")
    @click.argument("key", required=False)
    @click.option("--all", "every", is_flag=True, help="Every failed message.")
    def retry(key: str | None, every: bool) -> None:
        """Deliver a failed message (or --all of them) again."""
        if (key is None) == (not every):
            raise click.UsageError("Give one message's KEY, or --all.")
        count = retry_failed(outbox, key)
        if key is not None and not count:
            raise click.ClickException(f"No failed outbox message {key}.")
        click.echo(f"{count} message(s) will be delivered again.")

    @group.command("purge")
    @click.option(
        "--older-than",
        type=float,
        help="Days; PATTERNS_OUTBOX_RETENTION by default.",
    )
    def purge(older_than: float | None) -> None:
        """Delete the messages sent longer ago than the retention."""
        from flask import current_app

        retention = (
            dt.timedelta(days=older_than)
            if older_than is not None
            else dt.timedelta(seconds=current_app.config["PATTERNS_OUTBOX_RETENTION"])
        )
        click.echo(f"Purged {purge_sent(outbox, retention)} sent message(s).")
