"""Events held with the transaction that publishes them, and relayed to the
broker after it commits: an event a committed transaction published reaches the
broker even if the broker was away at that moment.

``publish`` in a unit of work writes the event to :data:`held_event_table` in
the same transaction. After the commit, the process relays it at once (the
fast path: one small query, the publish, one delete) unless older events of
its channel are still held; then it relays those first, oldest first. An event
the broker did not take stays held, and a background thread of the process
relays it, with backoff, once the broker answers again; ``flask streams relay``
does the same from a worker, for what a process that died left behind. Every
held event is published with its key, so one relayed twice (a relay that died
between publishing and forgetting it, or two relays at once) reaches the
broker once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
import typing as t
import uuid

import click
import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from .. import observe
from .._outage import Outage
from .._worker import OUTAGES
from .._worker import run_worker
from .broker import Broker
from .broker import BrokerUnavailable
from .events import encode_data

__all__ = ["EventRelay", "held_event_table", "metadata", "relay_commands"]

log = logging.getLogger("flask_patterns.streams")

#: Holds :data:`held_event_table`; create it with ``metadata.create_all(engine)``
#: (or in your migrations).
metadata = sa.MetaData()

held_event_table = sa.Table(
    "flask_patterns_held_event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(36), nullable=False, unique=True),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("event", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    #: What the observers carry from the task that published the event, as
    #: JSON: relayed later, it is still published as part of that task.
    sa.Column("context", sa.Text),
    sa.Index("flask_patterns_held_event_channel", "channel", "id"),
    # Ids never come back on SQLite either, so "older" stays "smaller".
    sqlite_autoincrement=True,
)

_BATCH = 100
_BACKOFF_CAP = 5.0


class _Held(t.NamedTuple):
    id: int
    key: str
    channel: str
    data: str
    event: str | None
    context: str | None

    def carried(self) -> observe.Carried | None:
        try:
            carried = json.loads(self.context) if self.context else None
        except ValueError:
            return None
        return carried if isinstance(carried, dict) else None


class EventRelay:
    """Relays the events held in ``engine``'s database to ``broker``."""

    def __init__(self, engine: sa.Engine, broker: Broker) -> None:
        self.engine = engine
        self.broker = broker
        self._lock = threading.Lock()
        #: The broker did not answer; a background thread relays until it does.
        self._away = False
        #: Bumped by every release while away, so the thread ends only when no
        #: release came in while it relayed.
        self._released = 0
        #: Logged when the broker stops answering and when the held events
        #: went out, not at every attempt in between.
        self._away_outage = Outage(
            log,
            "The broker is away; events stay held and are relayed when it answers",
            "The broker answers again",
        )
        self._failing = Outage(
            log, "Relaying held events failed; trying again", "Relaying works again"
        )

    def hold(
        self,
        connection: sa.Connection | Session,
        channel: str,
        data: object,
        event: str | None,
    ) -> int:
        """Write the event through ``connection`` (a connection or a session,
        in the transaction that publishes it); returns the row's id."""
        carried = observe.carry()
        insert = (
            held_event_table.insert()
            .values(
                key=uuid.uuid4().hex,
                channel=channel,
                data=encode_data(data),
                event=event,
                created_at=dt.datetime.now(dt.timezone.utc),
                context=None if carried is None else json.dumps(carried),
            )
            .returning(held_event_table.c.id)
        )
        try:
            return int(connection.execute(insert).scalar_one())
        except sa.exc.DBAPIError as error:
            if held_event_table.name in str(error):
                raise _missing_table(error) from error
            raise

    def release(self, held_id: int, channel: str) -> None:
        """Relay the committed event ``held_id`` of ``channel`` now: at once if
        it is the oldest held event of its channel, after every older one if
        not. While the broker does not answer it stays held, and a background
        thread relays it once the broker answers; never raises
        :exc:`BrokerUnavailable`."""
        with self._lock:
            if self._away:
                self._released += 1
                return
        c = held_event_table.c
        try:
            rows = self._rows((c.channel == channel) & (c.id <= held_id), limit=1)
            if rows and rows[0].id < held_id:
                self.relay_all()
            else:
                self._relay(rows)
        except BrokerUnavailable as error:
            self._broker_away(error)

    def relay_all(self) -> int:
        """Relay every held event, oldest first; returns how many. Raises
        :exc:`BrokerUnavailable` if the broker stops answering (what is not
        relayed stays held)."""
        relayed = 0
        while True:
            rows = self._rows(sa.true(), limit=_BATCH)
            relayed += self._relay(rows)
            if len(rows) < _BATCH:
                return relayed

    def held(self) -> int:
        """How many events wait to be relayed."""
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(held_event_table)
            return int(connection.execute(query).scalar_one())

    def _rows(self, which: sa.ColumnElement[bool], limit: int) -> list[_Held]:
        c = held_event_table.c
        query = (
            sa.select(c.id, c.key, c.channel, c.data, c.event, c.context)
            .where(which)
            .order_by(c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_Held(*row) for row in connection.execute(query)]

    def _relay(self, rows: list[_Held]) -> int:
        """Publish ``rows`` in order, forgetting each once the broker has it."""
        for row in rows:
            with observe.resumed(
                "flask_patterns.streams.relay", row.carried(), channel=row.channel
            ):
                self.broker.publish(row.channel, row.data, event=row.event, key=row.key)
            with self.engine.begin() as connection:
                connection.execute(
                    held_event_table.delete().where(held_event_table.c.id == row.id)
                )
        return len(rows)

    def _broker_away(self, error: BrokerUnavailable) -> None:
        """Log the outage once, and relay in the background until it ends."""
        with self._lock:
            if self._away:
                self._released += 1
                return
            self._away = True
        self._away_outage.failed(error)
        threading.Thread(
            target=self._relay_when_back, name="flask-patterns-relay", daemon=True
        ).start()

    def _relay_when_back(self) -> None:
        delay = 0.1
        relayed = 0
        while True:
            with self._lock:
                released = self._released
            try:
                relayed += self.relay_all()
            except Exception as error:
                if isinstance(error, BrokerUnavailable):
                    self._away_outage.failed(error)
                else:
                    self._failing.failed(error, exc_info=True)
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter
                delay = min(delay * 2, _BACKOFF_CAP)
                continue
            with self._lock:
                if self._released == released:
                    # Told before a new outage can start.
                    self._failing.ended()
                    self._away_outage.ended(f"; {relayed} held events relayed")
                    self._away = False
                    break


def relay_commands(relay_of: t.Callable[[Flask], EventRelay]) -> click.Group:
    """The ``flask streams`` commands; ``relay_of`` gives an app's relay."""
    group = AppGroup("streams", help="Relay the held events of the streams.")

    @group.command("relay")
    @click.option("--once", is_flag=True, help="Relay what is held, then exit.")
    @click.option(
        "--interval", default=1.0, show_default=True, help="Seconds between polls."
    )
    def relay(once: bool, interval: float) -> None:
        """Relay the events committed transactions left held (a process that
        died, or a broker that was away), oldest first."""
        relay = relay_of(current_app)

        def relayed(count: int) -> None:
            if count:
                click.echo(f"Relayed {count} held event(s).")

        run_worker(
            lambda stop: relay.relay_all(),
            name="The event relay",
            once=once,
            interval=interval,
            outages=(BrokerUnavailable, *OUTAGES),
            done=relayed,
        )

    return group


def _missing_table(error: Exception) -> RuntimeError:
    return RuntimeError(
        f"The table {held_event_table.name!r} for held events is missing: create"
        " it with flask_patterns.streams.relay.metadata.create_all(engine) or in"
        " your migrations, or set PATTERNS_STREAMS_DURABLE = False for"
        f" best-effort events ({error.__class__.__name__})."
    )
