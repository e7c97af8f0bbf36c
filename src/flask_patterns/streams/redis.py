"""A broker on Redis: each channel's history in a Redis stream, one global
sequence for ids, one pub/sub channel that carries every event to every
process."""

from __future__ import annotations

import json
import sys
import time
import typing as t
import urllib.parse
from operator import attrgetter

from .. import observe
from ._subscriber import END_CHANNEL
from ._subscriber import Subscriber
from .broker import BrokerUnavailable
from .broker import DEFAULT_HISTORY
from .broker import FanOutBroker
from .events import check_channel
from .events import check_event_name
from .events import check_limit
from .events import encode_data
from .events import event_id
from .events import History
from .events import new_epoch
from .events import Replay
from .events import StoredEvent
from .listener import Listener

if t.TYPE_CHECKING:
    import redis

__all__ = ["KEY_TTL", "RedisBroker"]

# The history's epoch, kept in a hash with the run id of the server that holds
# it. A missing hash (an empty Redis, a flush) or, unless the history survives
# restarts, another run id (a restart, a failover to a replica that may lag)
# starts a new epoch: the candidate the caller drew. KEYS[1] is the hash;
# ARGV[1] the candidate, ARGV[2] "1" if the history survives restarts.
_EPOCH_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local function current_epoch(history, candidate, survives)
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local kept = redis.call('HMGET', history, 'epoch', 'run')
  if kept[1] and (kept[2] == run or survives == '1') then
    if kept[2] ~= run then redis.call('HSET', history, 'run', run) end
    return kept[1]
  end
  redis.call('HSET', history, 'epoch', candidate, 'run', run)
  return candidate
end
"""

# The epoch and the newest position. KEYS[2] is the sequence.
_CURRENT_SCRIPT = (
    _EPOCH_LUA
    + """
local epoch = current_epoch(KEYS[1], ARGV[1], ARGV[2])
return {epoch, tonumber(redis.call('GET', KEYS[2]) or '0')}
"""
)

# One round trip, atomic: the epoch, a global position for ordering across
# channels, the event in the channel's bounded history, and a notification
# carrying it, with the publish time and the observers' context (ARGV[8],
# ARGV[9]). An event with a key (KEYS[5], ARGV[7]) that was published already
# is not published again: the first one's id is returned.
_PUBLISH_SCRIPT = (
    _EPOCH_LUA
    + """
local epoch = current_epoch(KEYS[1], ARGV[1], ARGV[2])
if ARGV[7] ~= '' then
  local seen = redis.call('GET', KEYS[5])
  if seen then return seen end
end
local position = tostring(redis.call('INCR', KEYS[2]))
local fields = {'data', ARGV[5]}
if ARGV[6] ~= '' then table.insert(fields, 'event'); table.insert(fields, ARGV[6]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '0-' .. position, unpack(fields))
local id = epoch .. '-' .. position
redis.call('PUBLISH', KEYS[4],
  cjson.encode({id, ARGV[4], ARGV[5], ARGV[6], ARGV[8], ARGV[9]}))
if ARGV[7] ~= '' then redis.call('SET', KEYS[5], id, 'EX', ARGV[7]) end
return id
"""
)

#: Seconds a publishing key is remembered, so that an event relayed twice
#: (a relay that died between publishing and forgetting it) is published once.
KEY_TTL = 900


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


def _default_options() -> dict[str, t.Any]:
    """A Redis that does not answer costs a request one timeout, not several:
    a refused or reset connection (a restart, a failover) is tried again twice
    at once, a timeout (a frozen server, a network that drops packets) is not,
    since the next attempt would wait as long again for the same silence."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return {
        "socket_connect_timeout": 1,
        "socket_timeout": 1,
        "health_check_interval": 10,
        "retry": Retry(
            ExponentialBackoff(cap=0.5, base=0.05),
            2,
            supported_errors=(redis.ConnectionError,),
        ),
    }


def _client_from_url(
    url: str, *, max_connections: int, pool_timeout: float, options: dict[str, t.Any]
) -> redis.Redis:
    import redis

    options = {**_default_options(), **options}
    if url.startswith("redis+sentinel://"):
        return _sentinel_client(url, options)
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        _refuse_cluster()
    pool = redis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=pool_timeout, **options
    )
    return redis.Redis(connection_pool=pool)


def _sentinel_client(url: str, options: dict[str, t.Any]) -> redis.Redis:
    """The primary that the sentinels of a ``redis+sentinel://`` URL name."""
    from redis.sentinel import Sentinel

    parts = urllib.parse.urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    path = [part for part in parts.path.split("/") if part]
    if not hosts or not 1 <= len(path) <= 2:
        raise ValueError(
            "A Sentinel URL is redis+sentinel://host:port[,host:port...]/service[/db],"
            f" not {url!r}."
        )
    sentinels = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        sentinels.append((name or host, int(port) if port.isdigit() else 26379))
    timeouts: dict[str, t.Any] = {
        key: options[key]
        for key in ("socket_timeout", "socket_connect_timeout")
        if key in options
    }
    password = urllib.parse.unquote(credentials.partition(":")[2]) or None
    sentinel = Sentinel(sentinels, sentinel_kwargs=timeouts, **timeouts)
    primary: redis.Redis = sentinel.master_for(
        path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        password=password,
        **options,
    )
    return primary


def _usable_client(client: t.Any) -> redis.Redis:
    import redis

    cluster = getattr(sys.modules.get("redis.cluster"), "RedisCluster", None)
    if cluster is not None and isinstance(client, cluster):
        _refuse_cluster()
    if not isinstance(client, redis.Redis):
        raise TypeError(f"RedisBroker needs a redis.Redis client, not {client!r}.")
    return client


def _refuse_cluster() -> t.NoReturn:
    raise ValueError(
        "RedisBroker does not run on Redis Cluster: its history script and its"
        " one notification channel need one primary. Use one Redis server, or"
        " Sentinel for failover (a redis+sentinel:// URL)."
    )


class RedisBroker(FanOutBroker):
    """A broker on Redis. Each channel's history is a Redis stream trimmed to
    about ``history`` entries; live events reach every process through one
    pub/sub channel, read by ONE subscriber connection per process whatever the
    number of open streams (see :class:`Subscriber`).

    :param url: a ``redis://``, ``rediss://`` or ``unix://`` URL, or a
        ``redis+sentinel://host:port[,host:port...]/service[/db]`` URL for the
        primary that Redis Sentinel names ``service`` (a password before the
        hosts is the primary's).
    :param client: a ``redis.Redis`` of the app's own instead of a URL (for
        example ``Sentinel(...).master_for(...)``), used as it is: the pool
        settings below and ``options`` are for the pool made from a URL.
    :param history: approximate number of events kept per channel for replay.
    :param prefix: prepended to every Redis key this broker uses; keep the
        ``{...}`` hash tag so that all keys live on one Redis Cluster node.
    :param health_interval: seconds between pings on the subscriber connection.
    :param history_survives_restart: keep the history's epoch when the Redis
        server restarts. Only for a Redis that loses no write in a restart
        (``appendonly yes`` with ``appendfsync always``); by default a restart
        starts a new epoch and every reconnecting client gets a ``reset``,
        because an older snapshot would hand out the same positions again for
        other events.
    :param max_connections: the connection pool's size. When every connection
        is busy (a storm of reconnecting streams replaying their history) a
        command waits up to ``pool_timeout`` seconds for one instead of failing.
    :param options: passed to :meth:`redis.BlockingConnectionPool.from_url`
        over the defaults: 1 s to connect and 1 s for a reply, and two quick
        retries of a refused or reset connection but none of a timeout.
    """

    remote = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: redis.Redis | None = None,
        history: int = DEFAULT_HISTORY,
        prefix: str = "{flask-patterns}:",
        health_interval: float = 5.0,
        history_survives_restart: bool = False,
        max_connections: int | None = None,
        pool_timeout: float | None = None,
        **options: t.Any,
    ) -> None:
        super().__init__()
        self.url = url
        self.history = history
        self.prefix = prefix
        self.health_interval = health_interval
        self.history_survives_restart = history_survives_restart
        if client is not None:
            if url is not None:
                raise TypeError("RedisBroker takes a url or a client, not both.")
            if options or max_connections is not None or pool_timeout is not None:
                raise TypeError(
                    "RedisBroker's pool settings are for the pool it makes from a"
                    " url; configure the client you give it instead."
                )
            self.client = _usable_client(client)
        elif url is None:
            raise TypeError("RedisBroker needs a url or a client.")
        else:
            self.client = _client_from_url(
                url,
                max_connections=50 if max_connections is None else max_connections,
                pool_timeout=10.0 if pool_timeout is None else pool_timeout,
                options=options,
            )
        self._publish_script = self.client.register_script(_PUBLISH_SCRIPT)
        self._current_script = self.client.register_script(_CURRENT_SCRIPT)
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

    @property
    def history_key(self) -> str:
        """The hash that holds the history's epoch."""
        return f"{self.prefix}history"

    def key_key(self, key: str) -> str:
        """The Redis key that remembers an event published with ``key``."""
        return f"{self.prefix}published:{key}"

    def _epoch_args(self) -> list[str]:
        return [new_epoch(), "1" if self.history_survives_restart else "0"]

    def _run_current(self, client: t.Any = None) -> t.Any:
        """Run the epoch-and-position script on ``client`` (a pipeline queues
        it); its reply is ``[epoch, position]``."""
        return self._current_script(
            keys=[self.history_key, self.sequence_key],
            args=self._epoch_args(),
            client=client,
        )

    def current(self) -> tuple[str, int]:
        """The history's epoch and the position of the newest event published
        in it (0 before the first); starts a new epoch if the history is gone."""
        import redis

        try:
            epoch, position = self._run_current()
        except redis.RedisError as error:
            raise self.unavailable(error) from error
        return _decode(epoch), int(position)

    def newest_position(self) -> int:
        """The position of the newest event published (0 before the first)."""
        return self.current()[1]

    def publish(
        self,
        channel: str,
        data: object,
        *,
        event: str | None = None,
        key: str | None = None,
    ) -> str:
        import redis

        check_channel(channel)
        check_event_name(event)
        keys = [
            self.history_key,
            self.sequence_key,
            self.stream_key(channel),
            self.notify_key,
            self.key_key(key or ""),
        ]
        with observe.span("flask_patterns.streams.publish", channel=channel):
            carried = observe.carry()
            args: list[str | int | float] = [
                *self._epoch_args(),
                self.history,
                channel,
                encode_data(data),
                event or "",
                KEY_TTL if key else "",
                repr(time.time()),
                "" if carried is None else json.dumps(carried),
            ]
            try:
                published = _decode(self._publish_script(keys=keys, args=args))
            except redis.RedisError as error:
                raise self.unavailable(error) from error
        observe.broker_seen(True)
        return published

    def replay(self, channels: t.Iterable[str], after: int) -> Replay:
        import redis

        events: list[StoredEvent] = []
        reset = False
        channels = list(channels)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                self._run_current(pipe)
                for channel in channels:
                    pipe.xrange(self.stream_key(channel), min=f"(0-{after}")
                for channel in channels:
                    pipe.xinfo_stream(self.stream_key(channel))
                results = pipe.execute(raise_on_error=False)
            (current,) = _checked_replies(results[:1])
            epoch, newest = _decode(current[0]), int(current[1])
            ranges = results[1 : 1 + len(channels)]
            infos = results[1 + len(channels) :]
            for channel, entries in zip(
                channels, _checked_replies(ranges), strict=True
            ):
                events += [
                    _stored(epoch, channel, key, fields) for key, fields in entries
                ]
            for info in _checked_replies(infos, missing_key_ok=True):
                reset = reset or (isinstance(info, dict) and _trimmed_past(info, after))
        except redis.RedisError as error:
            raise self.unavailable(error) from error
        events.sort(key=attrgetter("position"))
        return Replay(events, reset, newest, epoch)

    def recent(self, channel: str, limit: int) -> History:
        """Read with ``XREVRANGE ... COUNT limit``, in one ``MULTI`` with the
        epoch and the newest position: no event can be published in between,
        so the id resumes exactly after what was read."""
        import redis

        check_channel(channel)
        check_limit(limit)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                self._run_current(pipe)
                if limit:
                    pipe.xrevrange(self.stream_key(channel), count=limit)
                current, *newest_first = pipe.execute()
        except redis.RedisError as error:
            raise self.unavailable(error) from error
        epoch, newest = _decode(current[0]), int(current[1])
        entries = newest_first[0][::-1] if newest_first else []
        events = [_stored(epoch, channel, key, fields) for key, fields in entries]
        return History(events, event_id(epoch, newest))

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
        observe.broker_seen(True)

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
        observe.broker_seen(False)
        return BrokerUnavailable(f"Redis at {where} failed: {error}")


def _stored(
    epoch: str, channel: str, key: bytes | str, fields: dict[t.Any, t.Any]
) -> StoredEvent:
    event = fields.get(b"event")
    return StoredEvent(
        event_id(epoch, int(_decode(key).split("-")[1])),
        channel,
        _decode(fields[b"data"]),
        _decode(event) if event is not None else None,
    )
