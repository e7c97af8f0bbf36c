"""The Flask extension: publish after the commit, build the stream responses."""

from __future__ import annotations

import functools
import math
import typing as t
from dataclasses import dataclass

from flask import current_app
from flask import Flask
from flask import has_app_context
from flask import has_request_context
from flask import request
from flask import Response
from werkzeug.exceptions import TooManyRequests

from .._registry import is_registered
from .._registry import refuse_second
from .._registry import register
from .._registry import state_of
from ..db import after_commit
from ..db.state import database_state
from ..db.state import NAME as DB_NAME
from ..db.tasks import current_unit
from ..db.tasks import open_unit
from ..db.tasks import task_started
from ..db.unit import UnitOfWork
from . import access
from .broker import Broker
from .events import check_channel
from .events import check_event_name
from .events import History
from .listener import DEFAULT_QUEUE_LIMIT
from .memory import MemoryBroker
from .relay import EventRelay
from .relay import relay_commands
from .response import client_socket
from .response import stream_response
from .response import StreamSettings
from .slots import ClientKey
from .slots import ClientSlots
from .slots import DEFAULT_MAX_PER_CLIENT
from .slots import remote_address

__all__ = [
    "EventStreams",
    "StreamsState",
    "close_streams",
    "event_relay",
    "streams_state",
]

_NAME = "streams"
_RENAMED = {"PATTERNS_STREAMS_QUEUE": "PATTERNS_STREAMS_QUEUE_LIMIT"}


@dataclass
class StreamsState:
    """What :class:`EventStreams` keeps per app."""

    broker: Broker
    client_key: ClientKey
    slots: ClientSlots
    #: Relays the events held in the app's database, made on first use.
    relay: EventRelay | None = None


def event_relay(app: Flask) -> EventRelay:
    """The relay of the events ``app`` holds in its
    :class:`~flask_patterns.db.Database` (it needs one)."""
    state = streams_state(app)
    if state.relay is None:
        state.relay = EventRelay(database_state(app).engine, state.broker)
    return state.relay


def streams_state(app: Flask) -> StreamsState:
    """The state :class:`EventStreams` registered on ``app``."""
    return state_of(app, _NAME, StreamsState, what="EventStreams")


def close_streams(app: object) -> int:
    """End every open stream of ``app`` in this process, each with a
    reconnection delay spread over a few seconds, so that clients come back to
    the next process spread out; returns their number (0 for an app without
    :class:`EventStreams`, or any WSGI app that is not Flask). Call it when a
    worker shuts down."""
    if not isinstance(app, Flask) or not is_registered(app, _NAME):
        return 0
    return streams_state(app).broker.close_streams()


class EventStreams:
    """Publish events to the app's broker, after the current task commits.

    :param app: register on this app at once, or later with :meth:`init_app`.
    :param broker: the broker to use; a :class:`MemoryBroker` if not given.
    :param client_key: who opens a stream, for the cap of
        ``PATTERNS_STREAMS_MAX_PER_CLIENT`` open streams each: a function of
        the current request, by default its remote address. An app with logins
        passes one that names the user when there is one.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        broker: Broker | None = None,
        client_key: ClientKey = remote_address,
    ) -> None:
        self._broker = broker
        self._client_key = client_key
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        broker: Broker | None = None,
        client_key: ClientKey | None = None,
    ) -> None:
        """Register on ``app``; ``broker`` and ``client_key`` override the ones
        given at creation."""
        refuse_second(app, _NAME, what="EventStreams")
        for old, new in _RENAMED.items():
            if old in app.config:
                raise RuntimeError(f"{old} is now called {new}: rename the setting.")
        app.config.setdefault("PATTERNS_STREAMS_HEARTBEAT", 15.0)
        app.config.setdefault("PATTERNS_STREAMS_RETRY_MS", 3000)
        app.config.setdefault("PATTERNS_STREAMS_MAX_LIFETIME", 3600.0)
        app.config.setdefault("PATTERNS_STREAMS_QUEUE_LIMIT", DEFAULT_QUEUE_LIMIT)
        app.config.setdefault("PATTERNS_STREAMS_PUBLIC_CHANNELS", ())
        app.config.setdefault("PATTERNS_STREAMS_TOKEN_COOKIE", "stream_token")
        app.config.setdefault("PATTERNS_STREAMS_TOKEN_MAX_AGE", 24 * 3600)
        app.config.setdefault("PATTERNS_STREAMS_MAX_PER_CLIENT", DEFAULT_MAX_PER_CLIENT)
        app.config.setdefault("PATTERNS_STREAMS_WRITE_TIMEOUT", 30.0)
        app.config.setdefault("PATTERNS_STREAMS_DURABLE", True)
        app.config.setdefault("PATTERNS_STREAMS_DETACH", True)
        state = StreamsState(
            broker=broker or self._broker or MemoryBroker(),
            client_key=client_key or self._client_key,
            slots=ClientSlots(),
        )
        register(app, _NAME, state, what="EventStreams")
        app.cli.add_command(relay_commands(event_relay))

    @property
    def broker(self) -> Broker:
        """The current app's broker."""
        return streams_state(current_app).broker

    def open_streams(self, client: str) -> int:
        """How many streams ``client`` (a value of ``client_key``) holds open
        in this process."""
        return streams_state(current_app).slots.held(client)

    def publish(
        self,
        channel: str,
        data: object,
        *,
        event: str | None = None,
        durable: bool | None = None,
    ) -> None:
        """Publish once the current task's transaction commits; nothing is
        published if it rolls back.

        In a unit of work of the app's :class:`~flask_patterns.db.Database`,
        with a broker outside the process, the event is *durable*: written in
        the transaction and relayed to the broker after the commit, later if
        the broker is away then (see :mod:`~flask_patterns.streams.relay`).
        ``durable=False`` (or ``PATTERNS_STREAMS_DURABLE = False``) makes it
        best effort: published after the commit, and logged and lost if the
        broker fails. With no transaction open it is published at once, and
        :exc:`BrokerUnavailable` raises if the broker fails.
        """
        check_channel(channel)
        check_event_name(event)
        broker = self.broker
        unit = _open_unit()
        if unit is None:
            broker.publish(channel, data, event=event)
            return
        if durable is None:
            durable = bool(current_app.config["PATTERNS_STREAMS_DURABLE"])
        if durable and getattr(broker, "remote", False):
            relay = event_relay(current_app)
            held_id = relay.hold(unit.session, channel, data, event)
            after_commit(functools.partial(relay.release, held_id, channel))
            return
        after_commit(functools.partial(broker.publish, channel, data, event=event))

    def end_channel(self, channel: str) -> None:
        """End the open streams that carry ``channel``, in every process, once
        the current task commits: call it when the right to read the channel
        ends (a logout), so that no stream opened before keeps delivering it.
        Each ends with a retry hint, and is authorized anew when it
        reconnects."""
        check_channel(channel)
        after_commit(functools.partial(self.broker.end_channel, channel))

    def recent(self, channel: str, limit: int = 20) -> History:
        """The newest ``limit`` retained events of ``channel``, oldest first,
        and the id to open the page's stream with (``?last_event_id=``) so
        that it carries on right after them, with no gap and no duplicate.
        For a page that shows what already happened before it goes live.

        It reads the broker at once and raises :exc:`BrokerUnavailable` if
        the broker fails; the caller decides what to show instead. It checks
        no stream token: read only a channel the current user may see.
        """
        return self.broker.recent(channel, limit)

    def response(self, *channels: str, last_event_id: str | None = None) -> Response:
        """A ``text/event-stream`` response carrying the events of ``channels``.

        A reconnecting client gets every retained event after its
        ``Last-Event-ID`` header (or ``last_event_id`` query parameter, for a
        fresh page), then the live ones, with no gap and no duplicate; if events
        it never saw are no longer retained, it gets a ``reset`` event first.
        In a request, a private channel the request's token does not grant is a
        403, and a client over its cap a 429, before anything streams. The
        stream holds no database connection and needs no app context.
        """
        if not channels:
            raise ValueError("A stream needs at least one channel.")
        for channel in channels:
            check_channel(channel)
        settings = _settings()
        give_back = _nothing
        if has_request_context():
            access.authorize(channels)
            if last_event_id is None:
                last_event_id = request.headers.get(
                    "Last-Event-ID"
                ) or request.args.get("last_event_id")
            give_back = _take_slot(settings)
        sock = client_socket(request.environ) if has_request_context() else None
        return stream_response(
            self.broker,
            channels,
            last_event_id,
            settings,
            give_back,
            sock,
            detach=bool(current_app.config["PATTERNS_STREAMS_DETACH"]),
        )

    def channel_token(self, *channels: str) -> str:
        """A signed token that grants the private ``channels`` until
        ``PATTERNS_STREAMS_TOKEN_MAX_AGE`` seconds have passed. Send it as the
        ``X-Stream-Token`` header or in the ``stream_token`` cookie (an
        ``EventSource`` sends cookies, not headers), never in the URL: URLs end
        up in access logs. Needs :class:`~flask_patterns.tokens.Tokens`."""
        return access.channel_token(*channels)

    def granted_channels(self) -> frozenset[str]:
        """The private channels the current request's stream token grants: none
        without a token, or with one that is invalid or expired."""
        return access.granted_channels()

    def close_streams(self, app: Flask) -> int:
        """Same as the module's :func:`close_streams`."""
        return close_streams(app)


def _settings() -> StreamSettings:
    config = current_app.config
    return StreamSettings(
        heartbeat=float(config["PATTERNS_STREAMS_HEARTBEAT"]),
        retry_ms=int(config["PATTERNS_STREAMS_RETRY_MS"]),
        lifetime=float(config["PATTERNS_STREAMS_MAX_LIFETIME"]),
        queue_limit=int(config["PATTERNS_STREAMS_QUEUE_LIMIT"]),
        write_timeout=float(config["PATTERNS_STREAMS_WRITE_TIMEOUT"]),
    )


def _open_unit() -> UnitOfWork | None:
    """The current task's unit of work if it is still open and the app has a
    :class:`~flask_patterns.db.Database`, the same as ``after_commit`` uses."""
    if not has_app_context() or not is_registered(current_app, DB_NAME):
        return None
    if not task_started():
        current_unit()
    return open_unit()


def _nothing() -> None:
    pass


def _take_slot(settings: StreamSettings) -> t.Callable[[], None]:
    """One of the client's open streams in this process, or 429 with a
    ``Retry-After`` of a heartbeat: by then the server has written to every
    stream once and noticed the ones whose clients left."""
    limit = current_app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"]
    if not limit:
        return _nothing
    state = streams_state(current_app)
    give_back = state.slots.take(state.client_key(), int(limit))
    if give_back is None:
        raise TooManyRequests(
            f"Too many open streams: at most {int(limit)} per client.",
            retry_after=max(1, math.ceil(settings.heartbeat)),
        )
    return give_back
