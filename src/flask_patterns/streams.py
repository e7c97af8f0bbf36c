"""Event brokers and the extension that publishes events after a commit.

Every event is appended to a bounded per-channel history and gets a short id from
it, so a client that reconnects can say which event it saw last. Brokers work
without a Flask app, so a worker process can publish too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import sys
import threading
import time
import typing as t
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase

from flask import abort
from flask import current_app
from flask import Flask
from flask import has_request_context
from flask import request
from flask import Response
from werkzeug.exceptions import TooManyRequests

from .db import after_commit
from .sse import comment
from .sse import ServerSentEvent

if t.TYPE_CHECKING:
    import redis

__all__ = [
    "MAX_EVENT_ID",
    "Broker",
    "BrokerUnavailable",
    "EventStreams",
    "Listener",
    "MemoryBroker",
    "RedisBroker",
    "Replay",
    "StoredEvent",
    "parse_event_id",
    "remote_address",
]

log = logging.getLogger("flask_patterns.streams")

_EXTENSION = "flask_patterns.streams"
_CHANNELS_PURPOSE = "flask_patterns.streams.channels"
DEFAULT_HISTORY = 1000
DEFAULT_QUEUE = 256
DEFAULT_MAX_PER_CLIENT = 10
#: The largest id a broker hands out (Redis' INCR stops at a signed 64-bit
#: integer); a larger ``Last-Event-ID`` is not one of ours.
MAX_EVENT_ID = 2**63 - 1


class BrokerUnavailable(Exception):
    """The broker cannot be reached."""


@dataclass(frozen=True)
class StoredEvent:
    """An event as the broker keeps it. Ids are decimal integers, increasing
    across all channels of a broker, so one id resumes a stream of many
    channels."""

    id: str
    channel: str
    data: str
    event: str | None = None

    def to_sse(self) -> ServerSentEvent:
        return ServerSentEvent(self.data, event=self.event, id=self.id)

    @functools.cached_property
    def frame(self) -> bytes:
        """The encoded event, computed once however many streams send it."""
        return self.to_sse().encode()

    @functools.cached_property
    def position(self) -> int:
        """The id as a number, to compare events without parsing it again."""
        return int(self.id)


@dataclass
class Replay:
    """What a reconnecting stream missed: the retained events after its id, and
    whether older events it never saw are gone (``reset``)."""

    events: list[StoredEvent]
    reset: bool
    last_id: int


def parse_event_id(value: str | None) -> int | None:
    """The position an event id stands for, or ``None`` if it is not one of ours
    (not decimal digits, or past :data:`MAX_EVENT_ID`)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    position = int(value)
    return position if position <= MAX_EVENT_ID else None


class Listener:
    """The inbox of one open stream, filled by the broker. A listener that falls
    more than ``maxsize`` events behind is marked ``overflowed`` instead of
    growing or slowing the others; its stream then ends and the client replays.

    A deque and an event rather than a ``queue.Queue``: delivering to 10,000
    streams is one ``offer`` each per event, and under gevent a ``Queue`` costs
    about ten times as much time and memory. For the same reason a listener
    subscribed to a broker waits without a timer of its own (the broker's clock
    wakes it when its timeout has passed), and under gevent parks its greenlet
    for the broker to resume with all the others an event reaches.
    """

    __slots__ = (
        "_clock",
        "_items",
        "_parked",
        "_ready",
        "channels",
        "closing",
        "maxsize",
        "overflowed",
        "wake_at",
    )

    def __init__(
        self, channels: t.Iterable[str], *, maxsize: int = DEFAULT_QUEUE
    ) -> None:
        self.channels = frozenset(channels)
        self.maxsize = maxsize
        self.overflowed = False
        self.closing = False
        self._items: deque[StoredEvent] = deque()
        self._ready = threading.Event()
        # Set while subscribed to a broker whose clock wakes it at wake_at.
        self._clock: _FanOut | None = None
        self.wake_at = math.inf
        # Under gevent, the greenlet waiting in next(), if any.
        self._parked: t.Any = None

    def offer(self, event: StoredEvent) -> None:
        """Add an event (from any thread or greenlet); never blocks."""
        self._add(event)
        self.wake()

    def _add(self, event: StoredEvent) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self.maxsize:
            self.overflowed = True
        else:
            self._items.append(event)

    def next(self, timeout: float) -> StoredEvent | None:
        """The next event, waiting up to ``timeout`` seconds; ``None`` when the
        time ran out or the listener was closed or overflowed, or now and then
        a little early, so treat ``None`` as "nothing yet". A subscribed
        listener's timeout ends on the broker's clock: within 0.1 s, or about
        a second when threads race the clock."""
        if not self._items:
            # Clear before looking again: an offer in between sets it anew.
            self._ready.clear()
            if (
                not self._items
                and not self.closing
                and not self.overflowed
                and timeout > 0
            ):
                clock = self._clock
                if clock is None:
                    self._ready.wait(timeout)
                else:
                    self.wake_at = wake_at = time.monotonic() + timeout
                    if wake_at < clock.next_look:
                        clock.next_look = wake_at
                    if clock.hub is None:
                        self._ready.wait()
                    else:
                        self._park(clock)
                    self.wake_at = math.inf
        return self._items.popleft() if self._items else None

    def _park(self, clock: _FanOut) -> None:
        """Under gevent: wait for the broker to switch back to this greenlet.
        One hub callback then resumes every stream an event reaches, where an
        Event per stream takes a callback each."""
        me = clock.current_greenlet()
        self._parked = me
        # An offer from another OS thread may have come between the caller's
        # look and the line above, and seen nothing parked: look again.
        if self._items or self.closing or self.overflowed:
            self._parked = None
            return
        try:
            clock.hub.switch()
        finally:
            if self._parked is me:
                self._parked = None

    def wake(self) -> None:
        """End the current wait of :meth:`next` (it returns ``None``)."""
        self._wake_on(self._clock)

    def _wake_on(self, clock: _FanOut | None) -> None:
        if self._parked is not None and clock is not None:
            clock.resume([self])
        self._ready.set()

    def close(self) -> None:
        """Ask the stream to end (with a reconnection hint)."""
        self.closing = True
        self.wake()

    def interrupted(self) -> bool:
        """Whether the stream must end: closed, or fallen behind. Another thread
        or greenlet may have set either flag during the last wait."""
        return self.overflowed or self.closing


class _FanOut:
    """The listeners of one process, by channel, and the clock that ends their
    waits: one thread (a greenlet under gevent) that looks at every listener
    each ``tick`` seconds, instead of a timer started and cancelled by each of
    10,000 streams for each event. It runs only while there are listeners,
    and looks only when a wait is due (or a second has passed, in case a
    thread lowered ``next_look`` while it looked)."""

    tick = 0.1
    longest_sleep = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_channel: dict[str, set[Listener]] = {}
        self.listeners: set[Listener] = set()
        self._clock: threading.Thread | None = None
        #: The monotonic time of the earliest wait the clock must end.
        self.next_look = 0.0
        #: Under gevent, the hub that resumes parked listeners.
        self.hub: t.Any = None
        self.current_greenlet: t.Callable[[], t.Any] = threading.current_thread
        self._hub_thread = 0

    def add(self, listener: Listener) -> None:
        with self.lock:
            if self._clock is None:
                # Started before anything is registered: if it cannot start,
                # the subscription fails whole.
                self._use_gevent()
                clock = threading.Thread(
                    target=self._run_clock, name="flask-patterns-clock", daemon=True
                )
                clock.start()
                self._clock = clock
            for channel in listener.channels:
                self.by_channel.setdefault(channel, set()).add(listener)
            self.listeners.add(listener)
            listener._clock = self

    def remove(self, listener: Listener) -> None:
        with self.lock:
            for channel in listener.channels:
                listeners = self.by_channel.get(channel)
                if listeners is not None:
                    listeners.discard(listener)
                    if not listeners:
                        del self.by_channel[channel]
            if listener in self.listeners:
                self.listeners.discard(listener)
                self._detach(listener)

    def _detach(self, listener: Listener) -> None:
        """Leave the listener to timed waits, and end the wait it is in, which
        no clock would end any more."""
        listener._clock = None
        listener._wake_on(self)

    def _run_clock(self) -> None:
        stopped = False
        try:
            self._tick_until_idle()
            stopped = True
        except Exception:
            log.exception("The stream clock failed; streams fall back to timers.")
        finally:
            if not stopped:
                with self.lock:
                    self._clock = None
                    for listener in self.listeners:
                        self._detach(listener)

    def _tick_until_idle(self) -> None:
        last_look = time.monotonic()
        while True:
            time.sleep(self.tick)
            now = time.monotonic()
            if now < self.next_look and now - last_look < self.longest_sleep:
                continue
            with self.lock:
                if not self.listeners:
                    self._clock = None
                    return
                listeners = list(self.listeners)
            last_look = now
            next_look = now + self.longest_sleep
            for listener in listeners:
                wake_at = listener.wake_at
                if wake_at <= now:
                    listener.wake()
                elif wake_at < next_look:
                    next_look = wake_at
            self.next_look = next_look

    def deliver(self, event: StoredEvent) -> None:
        with self.lock:
            listeners = list(self.by_channel.get(event.channel, ()))
        parked = []
        for listener in listeners:
            listener._add(event)
            if listener._parked is not None:
                parked.append(listener)
            else:
                listener._ready.set()
        if parked:
            self.resume(parked)

    def _use_gevent(self) -> None:
        """Park listeners on gevent's hub if gevent patched ``threading``."""
        monkey = sys.modules.get("gevent.monkey")
        if monkey is None or not monkey.is_module_patched("threading"):
            self.hub = None
            return
        import gevent

        self.hub = gevent.get_hub()
        self.current_greenlet = gevent.getcurrent
        self._hub_thread = _original_get_ident()

    def resume(self, listeners: list[Listener]) -> None:
        """Under gevent: switch to each parked listener's greenlet from ONE
        hub callback."""
        loop = self.hub.loop
        if _original_get_ident() == self._hub_thread:
            loop.run_callback(_resume, listeners)
        else:
            loop.run_callback_threadsafe(_resume, listeners)

    def channels(self) -> list[str]:
        with self.lock:
            return list(self.by_channel)

    def close_all(self) -> int:
        with self.lock:
            listeners = list(self.listeners)
        for listener in listeners:
            listener.close()
        return len(listeners)

    def close_channel(self, channel: str) -> int:
        with self.lock:
            listeners = list(self.by_channel.get(channel, ()))
        for listener in listeners:
            listener.close()
        return len(listeners)

    def count(self) -> int:
        with self.lock:
            return len(self.listeners)


def _original_get_ident() -> int:
    """The OS thread's id, which gevent's patch turns into a greenlet's."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return threading.get_ident()
    return t.cast(int, monkey.get_original("_thread", "get_ident")())


def _resume(listeners: list[Listener]) -> None:
    """Run by the hub: switch to every listener still parked. A greenlet that
    left its wait otherwise (killed, say) is not parked any more."""
    for listener in listeners:
        parked = listener._parked
        if parked is not None:
            listener._parked = None
            parked.switch()


class Broker(t.Protocol):
    """What :class:`EventStreams` needs from a broker."""

    def publish(self, channel: str, data: object, *, event: str | None = None) -> str:
        """Append an event to ``channel``'s history, deliver it to the listeners
        of every process and return its id."""

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        """The retained events of ``channels`` after position ``after``."""

    def subscribe(self, listener: Listener) -> None:
        """Start delivering the listener's channels to it."""

    def unsubscribe(self, listener: Listener) -> None:
        """Stop delivering to the listener; never raises."""

    def close_streams(self) -> int:
        """Ask every open stream of this process to end; returns their number."""

    def end_channel(self, channel: str) -> None:
        """Ask the open streams carrying ``channel``, in every process, to end
        (with a retry hint), so that each is authorized again when it
        reconnects."""

    def ping(self) -> None:
        """Return if the broker answers, raise :exc:`BrokerUnavailable` if not."""


def _position(event: StoredEvent) -> int:
    return int(event.id)


def _encode(data: object) -> str:
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


def _check_channel(channel: str) -> None:
    if not channel or any(c in channel for c in "\r\n\0 *?[]"):
        raise ValueError(f"Invalid channel name: {channel!r}")


def _check_event(event: str | None) -> None:
    if event is not None:
        ServerSentEvent(None, event=event)


class _LocalStreams:
    """The in-process side every broker shares: the open streams of this
    process, by channel."""

    def __init__(self) -> None:
        self._fan_out = _FanOut()

    def subscribe(self, listener: Listener) -> None:
        self._fan_out.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._fan_out.remove(listener)

    def close_streams(self) -> int:
        return self._fan_out.close_all()

    def end_channel(self, channel: str) -> None:
        _check_channel(channel)
        self._fan_out.close_channel(channel)


class MemoryBroker(_LocalStreams):
    """A broker inside one process, for development and tests; works under
    threads and under gevent.

    :param history: how many events each channel keeps for replay.
    """

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        super().__init__()
        self.history = history
        self._lock = threading.Lock()
        self._last_id = 0
        self._channels: dict[str, deque[StoredEvent]] = {}
        self._trimmed: dict[str, int] = {}

    def publish(self, channel: str, data: object, *, event: str | None = None) -> str:
        _check_channel(channel)
        _check_event(event)
        with self._lock:
            self._last_id += 1
            stored = StoredEvent(str(self._last_id), channel, _encode(data), event)
            kept = self._channels.setdefault(channel, deque())
            kept.append(stored)
            if len(kept) > self.history:
                self._trimmed[channel] = int(kept.popleft().id)
            self._fan_out.deliver(stored)
        return stored.id

    def events(self, channel: str) -> list[StoredEvent]:
        """The events ``channel`` still keeps, oldest first."""
        with self._lock:
            return list(self._channels.get(channel, ()))

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        with self._lock:
            channels = list(channels)
            events = sorted(
                (
                    e
                    for c in channels
                    for e in self._channels.get(c, ())
                    if int(e.id) > after
                ),
                key=_position,
            )
            reset = any(self._trimmed.get(c, 0) > after for c in channels)
            return Replay(events, reset, self._last_id)

    def ping(self) -> None:
        """A memory broker always answers."""


# One round trip, atomic: a global position for ordering across channels, the
# event in the channel's bounded history, and a notification carrying it.
_PUBLISH_SCRIPT = """
local id = tostring(redis.call('INCR', KEYS[1]))
local fields = {'data', ARGV[3]}
if ARGV[4] ~= '' then table.insert(fields, 'event'); table.insert(fields, ARGV[4]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '0-' .. id, unpack(fields))
redis.call('PUBLISH', KEYS[3], cjson.encode({id, ARGV[2], ARGV[3], ARGV[4]}))
return id
"""


#: Leads a notification that ends the streams of a channel instead of
#: carrying an event.
_END_CHANNEL = "end-channel"


def _trimmed_past(info: dict[t.Any, t.Any], after: int) -> bool:
    """Whether trimming may have dropped an event after position ``after``: some
    entries were trimmed, and the oldest one kept is newer than ``after + 1``.
    Ids interleave across channels, so this errs towards a reset, never towards
    a silent gap."""
    trimmed = int(info["entries-added"]) > int(info["length"])
    first = int(_decode(info["recorded-first-entry-id"]).split("-")[1])
    return trimmed and first > after + 1


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _replies(replies: list[t.Any], *, missing_key_ok: bool = False) -> list[t.Any]:
    """A pipeline's replies, or the first error reply raised: a pipeline run
    with ``raise_on_error=False`` hands errors back as values. ``XINFO`` on a
    channel that never had an event answers "no such key", which is no error
    here (``None`` stands for it)."""
    import redis

    checked = []
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            if missing_key_ok and "no such key" in str(reply).lower():
                reply = None
            else:
                raise reply
        elif isinstance(reply, Exception):
            raise reply
        checked.append(reply)
    return checked


class RedisBroker(_LocalStreams):
    """A broker on Redis. Each channel's history is a Redis stream trimmed to
    about ``history`` entries; live events reach every process through one
    pub/sub channel, read by ONE subscriber connection per process whatever the
    number of open streams. The subscriber reconnects with backoff and replays
    what was published while it was away; a ping every ``health_interval``
    seconds that gets no answer within three intervals counts as a dead socket.

    :param url: a ``redis://`` URL.
    :param history: approximate number of events kept per channel for replay.
    :param prefix: prepended to every Redis key this broker uses; keep the
        ``{...}`` hash tag so that all keys live on one Redis Cluster node.
    :param health_interval: seconds between pings on the subscriber connection.
    :param options: passed to :meth:`redis.Redis.from_url` over the defaults
        (short timeouts and two quick retries).
    """

    def __init__(
        self,
        url: str,
        *,
        history: int = DEFAULT_HISTORY,
        prefix: str = "{flask-patterns}:",
        health_interval: float = 5.0,
        **options: t.Any,
    ) -> None:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        super().__init__()
        defaults: dict[str, t.Any] = {
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            "health_check_interval": 10,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        }
        self.url = url
        self.history = history
        self.prefix = prefix
        self.health_interval = health_interval
        self.client: redis.Redis = redis.Redis.from_url(url, **{**defaults, **options})
        self._script = self.client.register_script(_PUBLISH_SCRIPT)
        self._subscriber: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._start_lock = threading.Lock()
        self._cursor = 0

    def stream_key(self, channel: str) -> str:
        """The Redis key of ``channel``'s history."""
        return f"{self.prefix}stream:{channel}"

    @property
    def notify_key(self) -> str:
        """The pub/sub channel that carries every new event to every process.
        Pub/sub ignores the database number, so the channel names it: brokers
        on different databases of one server never see each other's events."""
        db = self.client.connection_pool.connection_kwargs.get("db", 0)
        return f"{self.prefix}events@{db}"

    @property
    def sequence_key(self) -> str:
        return f"{self.prefix}sequence"

    def publish(self, channel: str, data: object, *, event: str | None = None) -> str:
        import redis

        _check_channel(channel)
        _check_event(event)
        keys = [self.sequence_key, self.stream_key(channel), self.notify_key]
        args: list[str | int] = [self.history, channel, _encode(data), event or ""]
        try:
            return _decode(self._script(keys=keys, args=args))
        except redis.RedisError as error:
            raise self._unavailable(error) from error

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        import redis

        events: list[StoredEvent] = []
        reset = False
        try:
            with self.client.pipeline(transaction=False) as pipe:
                channels = list(channels)
                for channel in channels:
                    pipe.xrange(self.stream_key(channel), min=f"(0-{after}")
                for channel in channels:
                    pipe.xinfo_stream(self.stream_key(channel))
                results = pipe.execute(raise_on_error=False)
            ranges, infos = results[: len(channels)], results[len(channels) :]
            for channel, entries in zip(channels, _replies(ranges), strict=True):
                events += [
                    self._stored(channel, key, fields) for key, fields in entries
                ]
            for info in _replies(infos, missing_key_ok=True):
                reset = reset or (isinstance(info, dict) and _trimmed_past(info, after))
            last_id = int(self.client.get(self.sequence_key) or 0)
        except redis.RedisError as error:
            raise self._unavailable(error) from error
        events.sort(key=_position)
        return Replay(events, reset, last_id)

    @staticmethod
    def _stored(
        channel: str, key: bytes | str, fields: dict[t.Any, t.Any]
    ) -> StoredEvent:
        event = fields.get(b"event")
        return StoredEvent(
            _decode(key).split("-")[1],
            channel,
            _decode(fields[b"data"]),
            _decode(event) if event is not None else None,
        )

    def subscribe(self, listener: Listener) -> None:
        self._ensure_subscriber()
        super().subscribe(listener)

    def ping(self) -> None:
        import redis

        try:
            self.client.ping()
        except redis.RedisError as error:
            raise self._unavailable(error) from error

    def subscriber_connected(self, timeout: float | None = None) -> bool:
        """Wait until the subscriber connection listens (for tests and probes)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the subscriber and close the connection pool."""
        self._stopped.set()
        if self._subscriber is not None:
            self._subscriber.join(timeout=5)
        self.client.close()

    def _unavailable(self, error: Exception) -> BrokerUnavailable:
        kwargs = self.client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return BrokerUnavailable(f"Redis at {where} failed: {error}")

    # The subscriber: one thread (a greenlet under gevent) per broker and process.

    def _ensure_subscriber(self) -> None:
        with self._start_lock:
            if self._subscriber is None:
                self._subscriber = threading.Thread(
                    target=self._listen_forever,
                    name="flask-patterns-subscriber",
                    daemon=True,
                )
                self._subscriber.start()
        self._ready.wait(timeout=5)

    def _listen_forever(self) -> None:
        import redis

        delay = 0.1
        first = True
        while not self._stopped.is_set():
            try:
                self._listen(catch_up=not first)
            except (redis.RedisError, OSError) as error:
                self._ready.clear()
                log.warning(
                    "Event subscriber lost Redis (%s); retrying in %.1fs.", error, delay
                )
                self._stopped.wait(delay * (0.5 + random.random()))  # noqa: S311
                delay = min(delay * 2, 5.0)
                first = False
                continue
            delay = 0.1

    def _listen(self, *, catch_up: bool) -> None:
        pubsub = self.client.pubsub(  # type: ignore[no-untyped-call]
            ignore_subscribe_messages=True
        )
        try:
            pubsub.subscribe(self.notify_key)
            while pubsub.get_message(timeout=1.0) is None and not pubsub.subscribed:
                pass
            if catch_up:
                self._catch_up()
            else:
                self._cursor = int(self.client.get(self.sequence_key) or 0)
            self._ready.set()
            self._pump(pubsub)
        finally:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _pump(self, pubsub: t.Any) -> None:
        last_heard = last_ping = time.monotonic()
        while not self._stopped.is_set():
            message = pubsub.get_message(timeout=1.0, ignore_subscribe_messages=False)
            now = time.monotonic()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    self._deliver(message["data"])
            if now - last_ping >= self.health_interval:
                pubsub.ping()
                last_ping = now
            if now - last_heard > 3 * self.health_interval:
                raise OSError("no answer on the subscriber connection")

    def end_channel(self, channel: str) -> None:
        """Tell every process, through the notification channel, to end its
        streams of ``channel``. Nothing is stored: a process that is away from
        Redis at that moment keeps its streams until they end otherwise."""
        import redis

        _check_channel(channel)
        try:
            self.client.publish(self.notify_key, json.dumps([_END_CHANNEL, channel]))
        except redis.RedisError as error:
            raise self._unavailable(error) from error

    def _deliver(self, payload: bytes) -> None:
        message = json.loads(payload)
        if len(message) == 2 and message[0] == _END_CHANNEL:
            self._fan_out.close_channel(message[1])
            return
        event_id, channel, data, event = message
        position = int(event_id)
        # An old position is a duplicate of the catch-up, unless the history
        # itself went back (FLUSHDB, a restart without persistence).
        if position <= self._cursor and not self._history_lost():
            return
        self._cursor = position
        self._fan_out.deliver(StoredEvent(event_id, channel, data, event or None))

    def _history_lost(self) -> bool:
        """Whether Redis' sequence went back behind what this process delivered;
        if so, close the streams, whose clients come back and get a reset."""
        sequence = int(self.client.get(self.sequence_key) or 0)
        if sequence >= self._cursor:
            return False
        log.warning("Redis lost the event history; closing streams to reset them.")
        self._cursor = sequence
        self._fan_out.close_all()
        return True

    def _catch_up(self) -> None:
        if self._history_lost():
            return
        channels = self._fan_out.channels()
        if not channels:
            self._cursor = int(self.client.get(self.sequence_key) or 0)
            return
        replay = self.replay(channels, self._cursor)
        for stored in replay.events:
            self._cursor = max(self._cursor, int(stored.id))
            self._fan_out.deliver(stored)
        log.info("Event subscriber caught up %d events.", len(replay.events))


ClientKey = t.Callable[[], str]


def remote_address() -> str:
    """The default client of a stream: the request's remote address."""
    return request.remote_addr or ""


class _ClientSlots:
    """How many streams each client holds open in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, client: str, limit: int) -> t.Callable[[], None] | None:
        """A slot for ``client``, or ``None`` when it holds ``limit`` already.
        The function returned gives the slot back; calling it again does
        nothing."""
        with self._lock:
            held = self._open.get(client, 0)
            if held >= limit:
                return None
            self._open[client] = held + 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            with self._lock:
                if given_back:
                    return
                given_back = True
                left = self._open[client] - 1
                if left:
                    self._open[client] = left
                else:
                    del self._open[client]

        return give_back

    def held(self, client: str) -> int:
        """How many streams ``client`` holds open now."""
        with self._lock:
            return self._open.get(client, 0)


@dataclass(frozen=True)
class _StreamsState:
    broker: Broker
    client_key: ClientKey
    slots: _ClientSlots


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
        if _EXTENSION in app.extensions:
            raise RuntimeError("EventStreams is already registered on this app.")
        app.config.setdefault("PATTERNS_STREAMS_HEARTBEAT", 15.0)
        app.config.setdefault("PATTERNS_STREAMS_RETRY_MS", 3000)
        app.config.setdefault("PATTERNS_STREAMS_MAX_LIFETIME", 3600.0)
        app.config.setdefault("PATTERNS_STREAMS_QUEUE", DEFAULT_QUEUE)
        # Channels anyone may stream (fnmatch patterns); all others need a token.
        app.config.setdefault("PATTERNS_STREAMS_PUBLIC_CHANNELS", ())
        app.config.setdefault("PATTERNS_STREAMS_TOKEN_COOKIE", "stream_token")
        app.config.setdefault("PATTERNS_STREAMS_TOKEN_MAX_AGE", 24 * 3600)
        # Open streams per client and process; 0 or None: no cap.
        app.config.setdefault("PATTERNS_STREAMS_MAX_PER_CLIENT", DEFAULT_MAX_PER_CLIENT)
        app.extensions[_EXTENSION] = _StreamsState(
            broker=broker or self._broker or MemoryBroker(),
            client_key=client_key or self._client_key,
            slots=_ClientSlots(),
        )

    @property
    def broker(self) -> Broker:
        """The current app's broker."""
        return _state(current_app).broker

    def open_streams(self, client: str) -> int:
        """How many streams ``client`` (a value of ``client_key``) holds open
        in this process."""
        return _state(current_app).slots.held(client)

    def publish(self, channel: str, data: object, *, event: str | None = None) -> None:
        """Publish once the current task's transaction commits (at once if none
        is open); nothing is published if it rolls back."""
        _check_channel(channel)
        after_commit(functools.partial(self.broker.publish, channel, data, event=event))

    def response(self, *channels: str, last_event_id: str | None = None) -> Response:
        """A ``text/event-stream`` response carrying the events of ``channels``.

        A reconnecting client gets every retained event after its
        ``Last-Event-ID`` header (or ``last_event_id`` query parameter, for a
        fresh page), then the live ones, with no gap and no duplicate; if events
        it never saw are no longer retained, it gets a ``reset`` event first.
        The stream holds no database connection and needs no app context.
        """
        if not channels:
            raise ValueError("A stream needs at least one channel.")
        for channel in channels:
            _check_channel(channel)
        if has_request_context():
            self._authorize(channels)
        if last_event_id is None and has_request_context():
            last_event_id = request.headers.get("Last-Event-ID") or request.args.get(
                "last_event_id"
            )
        config = current_app.config
        settings = _StreamSettings(
            heartbeat=float(config["PATTERNS_STREAMS_HEARTBEAT"]),
            retry_ms=int(config["PATTERNS_STREAMS_RETRY_MS"]),
            lifetime=float(config["PATTERNS_STREAMS_MAX_LIFETIME"]),
            queue=int(config["PATTERNS_STREAMS_QUEUE"]),
        )
        give_back = _take_slot(settings) if has_request_context() else _nothing
        listener = Listener(channels, maxsize=settings.queue)
        frames = _stream(self.broker, listener, last_event_id, settings)
        return Response(
            _StreamBody(frames, give_back),
            mimetype="text/event-stream",
            # A stream may carry private channels: no cache keeps any of it.
            headers={"Cache-Control": "private, no-store", "X-Accel-Buffering": "no"},
            # The frames are bytes already: hand the generator to the server
            # as it is, without two more iterator layers per frame.
            direct_passthrough=True,
        )

    def end_channel(self, channel: str) -> None:
        """End the open streams that carry ``channel``, in every process, once
        the current task commits: call it when the right to read the channel
        ends (a logout), so that no stream opened before keeps delivering it.
        Each ends with a retry hint, and is authorized anew when it
        reconnects."""
        _check_channel(channel)
        after_commit(functools.partial(self.broker.end_channel, channel))

    def channel_token(self, *channels: str) -> str:
        """A signed token that grants the private ``channels`` until
        ``PATTERNS_STREAMS_TOKEN_MAX_AGE`` seconds have passed. Send it as the
        ``X-Stream-Token`` header or in the ``stream_token`` cookie (an
        ``EventSource`` sends cookies, not headers), never in the URL: URLs end
        up in access logs. Needs :class:`~flask_patterns.tokens.Tokens`."""
        from .tokens import dumps

        for channel in channels:
            _check_channel(channel)
        return dumps(_CHANNELS_PURPOSE, sorted(set(channels)))

    def granted_channels(self) -> frozenset[str]:
        """The private channels the current request's stream token grants: none
        without a token, or with one that is invalid or expired."""
        from .tokens import loads
        from .tokens import TokenError

        config = current_app.config
        token = request.headers.get("X-Stream-Token") or request.cookies.get(
            config["PATTERNS_STREAMS_TOKEN_COOKIE"]
        )
        if not token:
            return frozenset()
        max_age = config["PATTERNS_STREAMS_TOKEN_MAX_AGE"]
        try:
            granted = loads(_CHANNELS_PURPOSE, token, max_age=max_age)
        except TokenError:
            return frozenset()
        if not isinstance(granted, list):
            return frozenset()
        return frozenset(c for c in granted if isinstance(c, str))

    def _authorize(self, channels: t.Iterable[str]) -> None:
        """Refuse with 403, before the stream starts, a private channel that
        the request's token does not grant."""
        public = current_app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"]
        private = {c for c in channels if not any(fnmatchcase(c, p) for p in public)}
        if private and not private <= self.granted_channels():
            abort(403, description="A valid stream token is needed for this stream.")

    def close_streams(self, app: Flask) -> int:
        """End every open stream of ``app`` in this process, each with a
        reconnection delay spread over a few seconds, so that clients come back
        to the next process spread out. Call it when a worker shuts down."""
        return _state(app).broker.close_streams()


def _state(app: Flask) -> _StreamsState:
    try:
        return t.cast(_StreamsState, app.extensions[_EXTENSION])
    except KeyError:
        raise RuntimeError(
            "EventStreams is not registered on this app: call init_app(app) first."
        ) from None


@dataclass(frozen=True)
class _StreamSettings:
    heartbeat: float
    retry_ms: int
    lifetime: float
    queue: int


def _nothing() -> None:
    pass


def _take_slot(settings: _StreamSettings) -> t.Callable[[], None]:
    """One of the client's open streams in this process, or 429 with a
    ``Retry-After`` of a heartbeat: by then the server has written to every
    stream once and noticed the ones whose clients left."""
    limit = current_app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"]
    if not limit:
        return _nothing
    state = _state(current_app)
    give_back = state.slots.take(state.client_key(), int(limit))
    if give_back is None:
        raise TooManyRequests(
            f"Too many open streams: at most {int(limit)} per client.",
            retry_after=max(1, math.ceil(settings.heartbeat)),
        )
    return give_back


class _StreamBody:
    """The response body of a stream: the server iterates the frames
    themselves (no layer per frame) and closes this, which gives the client's
    slot back even when the frames never started (a ``HEAD`` request)."""

    __slots__ = ("_frames", "_give_back")

    def __init__(
        self, frames: t.Generator[bytes, None, None], give_back: t.Callable[[], None]
    ) -> None:
        self._frames = frames
        self._give_back = give_back

    def __iter__(self) -> t.Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        try:
            self._frames.close()
        finally:
            self._give_back()


def _spread_retry(settings: _StreamSettings) -> bytes:
    """A reconnection delay between one and four times the normal one."""
    delay = settings.retry_ms * (1 + 3 * random.random())  # noqa: S311
    return ServerSentEvent(None, retry=int(delay)).encode()


def _opening(
    broker: Broker, listener: Listener, last_event_id: str | None
) -> tuple[list[bytes], int | None]:
    """The frames that bring a reconnecting client up to date, and the position
    of the last one."""
    if last_event_id is None:
        return [], None
    position = parse_event_id(last_event_id)
    replay = broker.replay(listener.channels, position or 0)
    # An id past the newest event means the broker lost its history (a Redis
    # restart without persistence): the client must start over as well.
    if position is None or replay.reset or position > replay.last_id:
        reason = "unknown id" if position is None else "history expired"
        reset = ServerSentEvent(
            json.dumps({"reason": reason}), event="reset", id=str(replay.last_id)
        )
        return [reset.encode()], replay.last_id
    frames = [stored.frame for stored in replay.events]
    last = int(replay.events[-1].id) if replay.events else position
    return frames, last


def _stream(
    broker: Broker,
    listener: Listener,
    last_event_id: str | None,
    settings: _StreamSettings,
) -> t.Generator[bytes, None, None]:
    broker.subscribe(listener)  # before the replay, so nothing falls in between
    try:
        yield ServerSentEvent(None, retry=settings.retry_ms).encode() + comment("open")
        try:
            frames, last_sent = _opening(broker, listener, last_event_id)
        except BrokerUnavailable as error:
            log.warning(
                "A stream could not replay its history, retry hint sent: %s", error
            )
            yield _spread_retry(settings)
            return
        yield from frames
        jitter = 1 - 0.2 * random.random()  # noqa: S311
        deadline = time.monotonic() + settings.lifetime * jitter
        while not listener.overflowed:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or listener.closing:
                yield _spread_retry(settings)
                return
            stored = listener.next(min(settings.heartbeat, remaining))
            if listener.interrupted():
                continue
            if stored is None:
                yield comment()
                continue
            if last_sent is not None and stored.position <= last_sent:
                continue
            last_sent = stored.position
            yield stored.frame
    finally:
        broker.unsubscribe(listener)
