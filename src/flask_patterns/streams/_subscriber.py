"""The one subscriber connection of a process: it reads every event published
on Redis and hands it to the process' fan-out."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import typing as t

from .. import observe
from .._outage import Outage
from .events import StoredEvent

if t.TYPE_CHECKING:
    from .redis import RedisBroker

log = logging.getLogger("flask_patterns.streams")

#: Leads a notification that ends the streams of a channel instead of
#: carrying an event.
END_CHANNEL = "end-channel"


class Subscriber:
    """One thread (a greenlet under gevent) per broker and process, started by
    the first stream. It reconnects with backoff and replays what was published
    while it was away; a ping every ``health_interval`` seconds that gets no
    answer within three intervals counts as a dead socket. It keeps the
    history's epoch and the position of the newest event it delivered
    (:attr:`epoch`, :attr:`cursor`), to drop the duplicates a catch-up and the
    live notifications may both carry, and to notice a history that was lost.
    """

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.epoch: str | None = None
        self.cursor = 0
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        #: Set once the connection listens or an attempt to listen failed: a
        #: stream waits for the first listen, never for a Redis that is away.
        self._tried = threading.Event()
        self._stopped = threading.Event()
        self._start_lock = threading.Lock()
        #: Logged when the connection is lost and when it listens again, not
        #: at every attempt in between.
        self._outage = Outage(
            log, "Event subscriber lost Redis", "Event subscriber is back on Redis"
        )

    def start(self) -> None:
        """Start the thread if it is not running, and wait (up to 5 s) until it
        listens or fails to."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen_forever,
                    name="flask-patterns-subscriber",
                    daemon=True,
                )
                self._thread.start()
        self._tried.wait(timeout=5)

    def wait_until_listening(self, timeout: float | None = None) -> bool:
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen_forever(self) -> None:
        import redis

        delay = 0.1
        first = True
        while not self._stopped.is_set():
            try:
                self._listen(catch_up=not first)
            except (redis.RedisError, OSError) as error:
                if self._listening.is_set():
                    delay = 0.1  # it listened, so this is a new outage
                self._listening.clear()
                self._tried.set()
                observe.broker_seen(False)
                self._outage.failed(error)
                log.debug("Event subscriber retrying in %.1fs: %s", delay, error)
                self._stopped.wait(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 5.0)
                first = False
                continue
            delay = 0.1

    def _listen(self, *, catch_up: bool) -> None:
        pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
        reconnects = _Reconnects()
        try:
            pubsub.subscribe(self.broker.notify_key)
            reconnects.watch(pubsub.connection)
            while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
                pass
            if catch_up:
                self._catch_up()
            else:
                self.epoch, self.cursor = self.broker.current()
            self._listening.set()
            self._tried.set()
            observe.broker_seen(True)
            self._outage.ended()
            self._pump(pubsub, reconnects)
        finally:
            reconnects.stop()
            with contextlib.suppress(Exception):
                pubsub.close()

    def _pump(self, pubsub: t.Any, reconnects: _Reconnects) -> None:
        interval = self.broker.health_interval
        last_heard = last_ping = time.monotonic()
        while not self._stopped.is_set():
            message = pubsub.get_message(timeout=1.0, ignore_subscribe_messages=False)
            if reconnects.count:
                # redis-py reconnected and subscribed again by itself: what
                # was published meanwhile comes from the history, before this
                # message (a duplicate of the catch-up then, and dropped).
                reconnects.count = 0
                self._catch_up()
            now = time.monotonic()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    self.deliver(message["data"])
            if now - last_ping >= interval:
                pubsub.ping()
                last_ping = now
            if now - last_heard > 3 * interval:
                raise OSError("no answer on the subscriber connection")

    def deliver(self, payload: bytes) -> None:
        """Hand one notification to the fan-out: an event, or the word to end
        the streams of a channel."""
        message = json.loads(payload)
        fan_out = self.broker.fan_out
        if len(message) == 2 and message[0] == END_CHANNEL:
            fan_out.close_channel(message[1])
            return
        stored = _stored(message)
        if stored.epoch != self.epoch:
            # A new history (a flush, a restart): streams of the old one end
            # as their next event arrives, and their clients get a reset.
            log.warning(
                "Redis started a new event history (%s, was %s).",
                stored.epoch,
                self.epoch,
            )
            self.epoch = stored.epoch
        elif stored.position <= self.cursor:
            return  # a duplicate of the catch-up
        self.cursor = stored.position
        with observe.resumed(
            "flask_patterns.streams.deliver", stored.context, channel=stored.channel
        ):
            fan_out.deliver(stored)

    def _catch_up(self) -> None:
        """Deliver what was published while the connection was away; if the
        history itself was lost meanwhile, close the streams instead (their
        clients come back and get a reset)."""
        fan_out = self.broker.fan_out
        channels = fan_out.channels()
        if not channels:
            self.epoch, self.cursor = self.broker.current()
            return
        replay = self.broker.replay(channels, self.cursor)
        if replay.epoch != self.epoch or replay.reset:
            # The history was lost (a flush, a restart), trimmed past what the
            # streams missed meanwhile, or never known (no listen succeeded
            # yet): the streams reconnect, and replay or get a reset.
            if self.epoch is not None:
                log.warning(
                    "Redis lost the event history; closing streams to reset them."
                )
            self.epoch, self.cursor = replay.epoch, replay.newest_position
            fan_out.close_all("reset")
            return
        for stored in replay.events:
            self.cursor = max(self.cursor, stored.position)
            fan_out.deliver(stored)
        log.info("Event subscriber caught up %d events.", len(replay.events))


class _Reconnects:
    """Counts the times redis-py reconnects the subscriber's connection by
    itself (its ``retry``): it subscribes again without a word, and what was
    published meanwhile never arrives. Only a catch-up delivers that."""

    def __init__(self) -> None:
        self.count = 0
        self._connection: t.Any = None

    def watch(self, connection: t.Any) -> None:
        if connection is not None:
            self._connection = connection
            connection.register_connect_callback(self._connected)

    def _connected(self, connection: t.Any) -> None:
        self.count += 1

    def stop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.deregister_connect_callback(self._connected)
            self._connection = None


def _stored(message: list[t.Any]) -> StoredEvent:
    """The event a notification carries: id, channel, data and event name,
    then (from publishers that send them) the publish time and the observers'
    context."""
    published_at = context = None
    if len(message) >= 6:
        # Only what the observers make of it: a malformed value is dropped,
        # never a reason to lose the event.
        with contextlib.suppress(TypeError, ValueError):
            published_at = float(message[4]) if message[4] else None
        with contextlib.suppress(TypeError, ValueError):
            carried = json.loads(message[5]) if message[5] else None
            context = carried if isinstance(carried, dict) else None
    return StoredEvent(
        message[0],
        message[1],
        message[2],
        message[3] or None,
        published_at=published_at,
        context=context,
    )
