"""A broker on Redis: each channel's history in a Redis stream, one global
sequence for ids, one pub/sub channel that carries every event to every
process."""

from __future__ import annotations

import json
import typing as t
from operator import attrgetter

from ._subscriber import END_CHANNEL
from ._subscriber import Subscriber
from .broker import BrokerUnavailable
from .broker import DEFAULT_HISTORY
from .broker import FanOutBroker
from .events import check_channel
from .events import check_event_name
from .events import encode_data
from .events import Replay
from .events import StoredEvent
from .listener import Listener

if t.TYPE_CHECKING:
    import redis

__all__ = ["RedisBroker"]

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


def _checked_replies(
    replies: list[t.Any], *, missing_key_ok: bool = False
) -> list[t.Any]:
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


class RedisBroker(FanOutBroker):
    """A broker on Redis. Each channel's history is a Redis stream trimmed to
    about ``history`` entries; live events reach every process through one
    pub/sub channel, read by ONE subscriber connection per process whatever the
    number of open streams (see :class:`Subscriber`).

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
        self.subscriber = Subscriber(self)

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

    def newest_position(self) -> int:
        """The position of the newest event published (0 before the first)."""
        return int(self.client.get(self.sequence_key) or 0)

    def publish(self, channel: str, data: object, *, event: str | None = None) -> str:
        import redis

        check_channel(channel)
        check_event_name(event)
        keys = [self.sequence_key, self.stream_key(channel), self.notify_key]
        args: list[str | int] = [self.history, channel, encode_data(data), event or ""]
        try:
            return _decode(self._script(keys=keys, args=args))
        except redis.RedisError as error:
            raise self.unavailable(error) from error

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
            for channel, entries in zip(
                channels, _checked_replies(ranges), strict=True
            ):
                events += [_stored(channel, key, fields) for key, fields in entries]
            for info in _checked_replies(infos, missing_key_ok=True):
                reset = reset or (isinstance(info, dict) and _trimmed_past(info, after))
            newest = self.newest_position()
        except redis.RedisError as error:
            raise self.unavailable(error) from error
        events.sort(key=attrgetter("position"))
        return Replay(events, reset, newest)

    def subscribe(self, listener: Listener) -> None:
        self.subscriber.start()
        super().subscribe(listener)

    def end_channel(self, channel: str) -> None:
        """Tell every process, through the notification channel, to end its
        streams of ``channel``. Nothing is stored: a process that is away from
        Redis at that moment keeps its streams until they end otherwise."""
        import redis

        check_channel(channel)
        try:
            self.client.publish(self.notify_key, json.dumps([END_CHANNEL, channel]))
        except redis.RedisError as error:
            raise self.unavailable(error) from error

    def ping(self) -> None:
        import redis

        try:
            self.client.ping()
        except redis.RedisError as error:
            raise self.unavailable(error) from error

    def wait_until_subscribed(self, timeout: float | None = None) -> bool:
        """Block until this process' subscriber connection listens, or
        ``timeout`` seconds; returns whether it does (for tests and probes)."""
        return self.subscriber.wait_until_listening(timeout)

    def close(self) -> None:
        """Stop the subscriber and close the connection pool."""
        self.subscriber.stop()
        self.client.close()

    def unavailable(self, error: Exception) -> BrokerUnavailable:
        """``error`` as a :exc:`BrokerUnavailable` that says where Redis is."""
        kwargs = self.client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return BrokerUnavailable(f"Redis at {where} failed: {error}")


def _stored(channel: str, key: bytes | str, fields: dict[t.Any, t.Any]) -> StoredEvent:
    event = fields.get(b"event")
    return StoredEvent(
        _decode(key).split("-")[1],
        channel,
        _decode(fields[b"data"]),
        _decode(event) if event is not None else None,
    )
