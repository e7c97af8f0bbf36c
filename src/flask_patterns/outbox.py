"""A transactional outbox: side effects that must not be lost (a confirmation
mail, a webhook) are written in the same transaction as the data they are
about, and delivered after the commit, at least once.

``after_commit`` alone is at most once: a process that dies between the commit
and the callback loses the mail. Here the message is a row, committed with the
order; the commit's callback delivers it at once, and ``flask outbox work``
delivers whatever a dead process left behind, with retries and backoff. Both
claim a message with a lease before delivering it, so they never race. See
``docs/outbox.md``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import random
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass

import click
import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask.cli import AppGroup

from . import observe
from ._outage import Outages
from ._registry import refuse_second
from ._registry import register
from ._worker import run_worker
from .db import after_commit
from .db import Database

__all__ = ["Message", "Outbox", "metadata", "outbox_table"]

log = logging.getLogger("flask_patterns.outbox")

_NAME = "outbox"

#: Holds :data:`outbox_table`; create it with ``metadata.create_all(engine)``.
metadata = sa.MetaData()

outbox_table = sa.Table(
    "outbox_message",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(36), nullable=False, unique=True),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("failed_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    #: What the observers carry from the task that wrote the message (a
    #: request id, a trace), as JSON: its delivery is told as part of it.
    sa.Column("context", sa.Text),
    sa.Index("outbox_message_due", "sent_at", "failed_at", "available_at"),
)

Handler = t.Callable[["Message"], None]
Available = t.Callable[[], bool]


class Message(t.NamedTuple):
    """A message as its handler receives it. ``key`` is unique per message and
    stays the same across attempts: use it to make delivery idempotent (for
    example as the mail's ``Message-ID``)."""

    id: int
    key: str
    kind: str
    payload: t.Any
    attempts: int


def _carried(context: str | None) -> observe.Carried | None:
    """The observers' context stored with a message, if any (a malformed one
    is ignored: it only names where the message came from)."""
    if not context:
        return None
    try:
        carried = json.loads(context)
    except ValueError:
        return None
    return carried if isinstance(carried, dict) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _deliverable(now: dt.datetime) -> tuple[sa.ColumnElement[bool], ...]:
    """Not sent, not given up, due, and not claimed by anyone right now."""
    return (
        outbox_table.c.sent_at.is_(None),
        outbox_table.c.failed_at.is_(None),
        outbox_table.c.available_at <= now,
        sa.or_(
            outbox_table.c.claimed_until.is_(None),
            outbox_table.c.claimed_until < now,
        ),
    )


@dataclass(frozen=True)
class _OutboxState:
    #: The outbox registered; its handlers serve every app it is registered on.
    outbox: Outbox


class Outbox:
    """Write messages in the current task's transaction and deliver them after
    it commits, at least once.

    :param app: register on this app at once, or later with :meth:`init_app`.
    :param db: the :class:`~flask_patterns.db.Database` whose session and
        engine the outbox uses.
    """

    def __init__(self, app: Flask | None = None, *, db: Database) -> None:
        self.db = db
        self.handlers: dict[str, Handler] = {}
        self.availability: dict[str, Available] = {}
        #: A kind that fails is logged when it starts failing and when it
        #: delivers again; each failed attempt only at DEBUG.
        self._outages: Outages[str] = Outages(
            log,
            "Outbox messages of kind {!r} fail to deliver; retrying with backoff",
            "Outbox messages of kind {!r} deliver again",
        )
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` and add the ``flask outbox`` commands."""
        refuse_second(app, _NAME, what="Outbox")
        app.config.setdefault("PATTERNS_OUTBOX_LEASE", 60.0)
        app.config.setdefault("PATTERNS_OUTBOX_MAX_ATTEMPTS", 10)
        app.config.setdefault("PATTERNS_OUTBOX_BACKOFF", 2.0)
        app.config.setdefault("PATTERNS_OUTBOX_BACKOFF_CAP", 3600.0)
        app.config.setdefault("PATTERNS_OUTBOX_RETENTION", 7 * 24 * 3600.0)
        register(app, _NAME, _OutboxState(outbox=self), what="Outbox")
        app.cli.add_command(self._commands())

    def handler(
        self, kind: str, *, available: Available | None = None
    ) -> t.Callable[[Handler], Handler]:
        """Register the function that delivers messages of ``kind``. It runs in
        an app context and raises to ask for another attempt.

        :param available: called in an app context before messages of ``kind``
            are claimed; while it returns ``False`` (say, no mail server is
            configured) they stay pending, unclaimed, with no attempt counted,
            and go out once it returns ``True``.
        """

        def register(func: Handler) -> Handler:
            self.handlers[kind] = func
            if available is None:
                self.availability.pop(kind, None)
            else:
                self.availability[kind] = available
            return func

        return register

    def held_kinds(self) -> list[str]:
        """The kinds whose handler is not available now: their messages wait."""
        return sorted(kind for kind, ready in self.availability.items() if not ready())

    def add(self, kind: str, payload: t.Any) -> str:
        """Write a message in the current task's transaction; it is delivered
        right after the commit, or later by ``flask outbox work``. Returns the
        message's key."""
        if kind not in self.handlers:
            raise LookupError(f"No outbox handler for {kind!r}.")
        if not self.db.transaction_open:
            raise RuntimeError(
                "outbox.add() needs an open transaction, or the message would never"
                " be committed: call it in a request, a CLI command, an app context"
                " or a db.transaction() block."
            )
        key = str(uuid.uuid4())
        now = _now()
        carried = observe.carry()
        self.db.session.execute(
            outbox_table.insert().values(
                key=key,
                kind=kind,
                payload=json.dumps(payload),
                created_at=now,
                available_at=now,
                attempts=0,
                context=None if carried is None else json.dumps(carried),
            )
        )
        after_commit(functools.partial(self.deliver, key))
        return key

    def deliver(self, key: str) -> bool:
        """Claim the message ``key`` and deliver it now; ``False`` if it was
        already sent, failed for good, or is claimed by someone else."""
        claimed = self._claim(outbox_table.c.key == key)
        if claimed is None:
            return False
        return self._attempt(*claimed)

    def work(self, stop: threading.Event | None = None, *, batch: int = 100) -> int:
        """Deliver the messages that are due, oldest first; returns how many
        were sent. Once ``stop`` is set, no further message is claimed."""
        sent = 0
        for message_id in self._due(batch):
            if stop is not None and stop.is_set():
                break
            claimed = self._claim(outbox_table.c.id == message_id)
            if claimed is not None and self._attempt(*claimed):
                sent += 1
        return sent

    def pending(self) -> int:
        """How many messages wait for delivery (not sent, not failed for good)."""
        query = sa.select(sa.func.count()).where(
            outbox_table.c.sent_at.is_(None), outbox_table.c.failed_at.is_(None)
        )
        with self.db.transaction() as session:
            return int(session.scalar(query) or 0)

    def _due(self, batch: int) -> list[int]:
        now = _now()
        query = (
            sa.select(outbox_table.c.id)
            .where(*self._claimable(now))
            .order_by(outbox_table.c.id)
            .limit(batch)
        )
        with self.db.transaction() as session:
            return list(session.scalars(query))

    def _claim(
        self, which: sa.ColumnElement[bool]
    ) -> tuple[Message, observe.Carried | None] | None:
        """Take a lease on one message that is due, in a transaction of its own:
        of two processes racing for it, exactly one gets it."""
        now = _now()
        lease = now + dt.timedelta(seconds=current_app.config["PATTERNS_OUTBOX_LEASE"])
        claim = (
            outbox_table.update()
            .where(which, *self._claimable(now))
            .values(claimed_until=lease, attempts=outbox_table.c.attempts + 1)
            .returning(
                outbox_table.c.id,
                outbox_table.c.key,
                outbox_table.c.kind,
                outbox_table.c.payload,
                outbox_table.c.attempts,
                outbox_table.c.context,
            )
        )
        with self.db.transaction() as session:
            row = session.execute(claim).first()
        if row is None:
            return None
        message = Message(
            row.id, row.key, row.kind, json.loads(row.payload), row.attempts
        )
        return message, _carried(row.context)

    def _claimable(self, now: dt.datetime) -> tuple[sa.ColumnElement[bool], ...]:
        """Deliverable now, and of a kind whose handler is available."""
        held = self.held_kinds()
        not_held = (outbox_table.c.kind.not_in(held),) if held else ()
        return (*_deliverable(now), *not_held)

    def _attempt(self, message: Message, carried: observe.Carried | None) -> bool:
        handler = self.handlers.get(message.kind)
        with observe.resumed(
            "flask_patterns.outbox.deliver", carried, kind=message.kind
        ):
            try:
                if handler is None:
                    raise LookupError(f"No outbox handler for {message.kind!r}.")
                handler(message)
            except Exception as error:
                result = self._failed(message, error)
                observe.outbox_delivered(message.kind, result)
                return False
            self._finish(message.id, sent_at=_now(), claimed_until=None)
            self._outages[message.kind].ended()
            observe.outbox_delivered(message.kind, "sent")
            return True

    def _failed(self, message: Message, error: Exception) -> str:
        """Record a failed attempt; returns ``failed`` when it was the last
        one, ``retry`` when another one is due later."""
        config = current_app.config
        self._outages[message.kind].failed(error)
        if message.attempts >= config["PATTERNS_OUTBOX_MAX_ATTEMPTS"]:
            log.error(
                "Giving up on outbox message %s (%s) after %d attempts: %s",
                message.key,
                message.kind,
                message.attempts,
                error,
            )
            self._finish(message.id, failed_at=_now(), last_error=repr(error))
            return "failed"
        delay = min(
            config["PATTERNS_OUTBOX_BACKOFF"] * 2 ** (message.attempts - 1),
            config["PATTERNS_OUTBOX_BACKOFF_CAP"],
        ) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        log.debug(
            "Outbox message %s (%s) failed, attempt %d, next in %.1fs: %s",
            message.key,
            message.kind,
            message.attempts,
            delay,
            error,
        )
        self._finish(
            message.id,
            available_at=_now() + dt.timedelta(seconds=delay),
            claimed_until=None,
            last_error=repr(error),
        )
        return "retry"

    def _finish(self, message_id: int, **values: t.Any) -> None:
        update = outbox_table.update().where(outbox_table.c.id == message_id)
        with self.db.transaction() as session:
            session.execute(update.values(**values))

    def _commands(self) -> click.Group:
        # outbox_admin works on this module's table: imported here, not above.
        from .outbox_admin import add_admin_commands
        from .outbox_admin import count
        from .outbox_admin import oldest_pending_age
        from .outbox_admin import purge_sent

        group = AppGroup("outbox", help="Deliver the messages of the outbox.")

        @group.command("work")
        @click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
        @click.option(
            "--interval", default=1.0, show_default=True, help="Seconds between polls."
        )
        @click.option(
            "--batch", default=100, show_default=True, help="Messages per poll."
        )
        def work(once: bool, interval: float, batch: int) -> None:
            """Deliver due messages, retrying failures with backoff. It waits
            out database outages, and on SIGTERM or SIGINT finishes the message
            in flight and exits."""

            def delivered(sent: int) -> None:
                if sent:
                    click.echo(f"Delivered {sent} message(s).")

            purged_at = [-math.inf]

            def step(stop: threading.Event) -> int:
                sent = self.work(stop, batch=batch)
                # The retention, applied once an hour.
                if time.monotonic() - purged_at[0] > 3600:
                    retention = current_app.config["PATTERNS_OUTBOX_RETENTION"]
                    purge_sent(self, dt.timedelta(seconds=retention))
                    purged_at[0] = time.monotonic()
                return sent

            run_worker(
                step,
                name="The outbox worker",
                once=once,
                interval=interval,
                done=delivered,
            )

        @group.command("status")
        def status() -> None:
            """Show how many messages wait for delivery, and for how long."""
            age = oldest_pending_age(self)
            waited = (
                "" if age is None else f", the oldest for {age.total_seconds():.0f} s"
            )
            failed = count(self, "failed")
            click.echo(f"{self.pending()} message(s) pending{waited}.")
            if failed:
                click.echo(f"{failed} failed: see 'flask outbox list --state failed'.")
            held = self.held_kinds()
            if held:
                click.echo(f"Held until their handler is available: {', '.join(held)}.")

        add_admin_commands(group, self)
        return group
