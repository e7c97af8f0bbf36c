from __future__ import annotations

import json
import math
import time
import uuid

import pytest
from flask import Flask

from flask_patterns.db import Database
from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import EventStreams
from flask_patterns.streams import Listener
from flask_patterns.streams import MemoryBroker
from flask_patterns.streams import RedisBroker
from flask_patterns.streams import StoredEvent
from flask_patterns.tokens import Tokens


def history(broker, channel):
    """The (id, data, event) of each event the broker keeps for ``channel``."""
    return [(e.id, e.data, e.event) for e in broker.replay([channel], 0).events]


@pytest.fixture(params=["memory", "redis"])
def broker(request):
    if request.param == "memory":
        yield MemoryBroker(history=3)
        return
    url = request.getfixturevalue("redis_url")
    broker = RedisBroker(url, history=3, prefix="{test}:", health_interval=0.5)
    yield broker
    broker.close()


def test_publish_returns_increasing_ids_and_keeps_history(broker):
    ids = [broker.publish("orders", {"n": n}) for n in range(3)]
    assert len(set(ids)) == 3
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)
    assert all(i.isdigit() and len(i) < 20 for i in ids)
    assert [i for i, _, _ in history(broker, "orders")] == ids
    assert [json.loads(d) for _, d, _ in history(broker, "orders")] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]


def test_publish_keeps_strings_as_they_are_and_the_event_name(broker):
    broker.publish("news", "plain text", event="note")
    assert history(broker, "news")[0][1:] == ("plain text", "note")


def test_channels_are_separate(broker):
    broker.publish("a", 1)
    broker.publish("b", 2)
    assert [d for _, d, _ in history(broker, "a")] == ["1"]
    assert [d for _, d, _ in history(broker, "b")] == ["2"]


def test_history_is_bounded(broker):
    for n in range(300):
        broker.publish("busy", n)
    kept = history(broker, "busy")
    # Redis trims whole stream nodes (100 entries by default), never fewer than asked.
    assert 3 <= len(kept) <= 3 + 100
    assert kept[-1][1] == "299"


@pytest.mark.parametrize("channel", ["", "a b", "a\nb", "a*", "x\0"])
def test_bad_channel_names_are_refused(broker, channel):
    with pytest.raises(ValueError, match="Invalid channel"):
        broker.publish(channel, 1)


def test_ping_answers_when_the_broker_is_up(broker):
    broker.ping()


def test_redis_ping_and_publish_say_where_redis_is_when_it_is_down(redis_process):
    broker = RedisBroker(redis_process.url)
    broker.ping()
    redis_process.stop()
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{redis_process.port}"):
        broker.ping()
    with pytest.raises(BrokerUnavailable):
        broker.publish("c", 1)
    redis_process.start()
    broker.ping()
    assert broker.publish("c", 1)
    broker.close()


def make_app(tmp_path, broker, public=("*",)):
    app = Flask(__name__)
    app.config["PATTERNS_DATABASE_URL"] = f"sqlite:///{tmp_path}/s.db"
    app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = public
    app.config["SECRET_KEY"] = "stream tokens"
    Database(app)
    Tokens(app)
    EventStreams(app, broker=broker)
    return app


def test_event_streams_publish_after_the_task_commits(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    with app.app_context():
        assert EventStreams().broker is broker
        EventStreams().publish("activity", {"x": 1})
        assert broker.events("activity") == []
    assert [e.data for e in broker.events("activity")] == ['{"x":1}']


def test_event_streams_publish_nothing_when_the_task_rolls_back(tmp_path):
    broker = MemoryBroker()
    app = make_app(tmp_path, broker)
    extension = EventStreams()
    with pytest.raises(ZeroDivisionError), app.app_context():
        extension.publish("activity", {"x": 1})
        1 / 0  # noqa: B018
    assert broker.events("activity") == []


def test_event_streams_refuse_double_registration_and_missing_app(tmp_path):
    app = make_app(tmp_path, MemoryBroker())
    with pytest.raises(RuntimeError, match="already registered"):
        EventStreams(app)
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match="init_app"):
        EventStreams().broker  # noqa: B018


# Streams: wire format, replay, reset, slow clients, shutdown.


class Reader:
    """Reads a streamed response chunk by chunk, as a browser would parse it."""

    def __init__(self, response):
        self.response = response
        self.chunks = iter(response.response)
        self.comments = 0

    def frames(self, count, timeout=10.0):
        """The next ``count`` frames that are not heartbeat comments."""
        frames = []
        deadline = time.monotonic() + timeout
        while len(frames) < count:
            assert time.monotonic() < deadline, f"only {len(frames)} of {count} frames"
            chunk = next(self.chunks)
            if chunk == b":\n\n":
                self.comments += 1
                continue
            frames.append(chunk)
        return frames

    def events(self, count, timeout=10.0):
        return [parse_frame(frame) for frame in self.frames(count, timeout)]

    def close(self):
        self.response.response.close()


def parse_frame(frame):
    fields = {}
    for line in filter(None, frame.decode().split("\n")):
        name, _, value = line.partition(": ")
        fields.setdefault(name.rstrip(":"), []).append(value)
    return {k: "\n".join(v) for k, v in fields.items()}


@pytest.fixture
def stream_app(tmp_path, broker):
    app = make_app(tmp_path, broker)
    app.config["PATTERNS_STREAMS_HEARTBEAT"] = 0.05
    streams = EventStreams()

    @app.get("/streams/<path:names>")
    def stream(names):
        return streams.response(*names.split(","))

    app.extensions["test.streams"] = streams
    return app


def open_stream(app, path, **headers):
    response = app.test_client().get(path, headers=headers, buffered=False)
    reader = Reader(response)
    opening = next(reader.chunks)
    assert opening == b"retry: 3000\n\n: open\n\n"
    return reader


def test_stream_headers_and_opening_frame_are_sent_at_once(stream_app):
    reader = open_stream(stream_app, "/streams/activity")
    headers = reader.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "private, no-store"
    assert headers["X-Accel-Buffering"] == "no"
    assert "Connection" not in headers
    reader.close()


def test_live_events_reach_an_open_stream(stream_app, broker):
    reader = open_stream(stream_app, "/streams/activity")
    event_id = broker.publish("activity", {"sku": "mug"}, event="purchase")
    assert reader.events(1) == [
        {"event": "purchase", "id": event_id, "data": '{"sku":"mug"}'}
    ]
    reader.close()


def test_idle_stream_sends_heartbeat_comments(stream_app, broker):
    reader = open_stream(stream_app, "/streams/activity")
    assert next(reader.chunks) == b":\n\n"
    reader.close()


@pytest.mark.parametrize("how", ["header", "query"])
def test_reconnect_replays_missed_events_without_gap_or_duplicate(
    stream_app, broker, how
):
    first, second, third = (broker.publish("activity", n) for n in range(3))
    if how == "header":
        reader = open_stream(
            stream_app, "/streams/activity", **{"Last-Event-ID": first}
        )
    else:
        reader = open_stream(stream_app, f"/streams/activity?last_event_id={first}")
    fourth = broker.publish("activity", 3)
    assert [e["id"] for e in reader.events(3)] == [second, third, fourth]
    reader.close()


def test_reconnect_past_retention_gets_a_reset_event(stream_app, broker):
    ids = [broker.publish("activity", n) for n in range(300)]
    reader = open_stream(stream_app, "/streams/activity", **{"Last-Event-ID": ids[0]})
    (reset,) = reader.events(1)
    assert reset["event"] == "reset"
    assert reset["id"] == ids[-1]
    assert json.loads(reset["data"]) == {"reason": "history expired"}
    live = broker.publish("activity", "after")
    assert reader.events(1)[0]["id"] == live
    reader.close()


@pytest.mark.parametrize(
    "bad_id",
    ["garbage", "-1", "1" * 30, "99999999", str(2**63), str(2**64 + 1), "٣"],
)
def test_unknown_or_future_ids_get_a_reset_event(stream_app, broker, bad_id):
    broker.publish("activity", "x")
    reader = open_stream(stream_app, "/streams/activity", **{"Last-Event-ID": bad_id})
    assert reader.events(1)[0]["event"] == "reset"
    reader.close()


def test_one_stream_carries_several_channels_in_publish_order(stream_app, broker):
    start = broker.publish("a", "before")
    a1 = broker.publish("a", "a1")
    b1 = broker.publish("b", "b1")
    reader = open_stream(stream_app, "/streams/a,b", **{"Last-Event-ID": start})
    b2 = broker.publish("b", "b2")
    broker.publish("c", "not subscribed")
    a2 = broker.publish("a", "a2")
    assert [e["id"] for e in reader.events(4)] == [a1, b1, b2, a2]
    reader.close()


def test_slow_client_is_disconnected_while_fast_ones_keep_up(stream_app, broker):
    stream_app.config["PATTERNS_STREAMS_QUEUE"] = 4
    slow = open_stream(stream_app, "/streams/activity")
    fast = open_stream(stream_app, "/streams/activity")
    received = []
    for n in range(20):
        broker.publish("activity", n)
        received += fast.events(1)
    assert [e["data"] for e in received] == [str(n) for n in range(20)]
    assert list(slow.chunks) == [], "the slow stream ends without sending more"
    fast.close()


def test_closing_streams_sends_a_spread_retry_hint(stream_app, broker):
    reader = open_stream(stream_app, "/streams/activity")
    streams = stream_app.extensions["test.streams"]
    assert streams.close_streams(stream_app) == 1
    (hint,) = reader.frames(1)
    assert hint.startswith(b"retry: ")
    assert 3000 <= int(hint.split()[1]) <= 12000
    assert list(reader.chunks) == []


def test_stream_ends_after_its_lifetime(stream_app, broker):
    stream_app.config["PATTERNS_STREAMS_MAX_LIFETIME"] = 0.2
    reader = open_stream(stream_app, "/streams/activity")
    rest = [c for c in reader.chunks if c != b":\n\n"]
    assert len(rest) == 1
    assert rest[0].startswith(b"retry: ")


def test_closed_streams_release_their_listener(stream_app, broker):
    readers = [open_stream(stream_app, "/streams/activity") for _ in range(3)]
    assert broker._fan_out.count() == 3
    for reader in readers:
        reader.close()
    assert broker._fan_out.count() == 0


def test_stream_needs_valid_channels(stream_app):
    with stream_app.test_request_context():
        streams = stream_app.extensions["test.streams"]
        with pytest.raises(ValueError, match="at least one"):
            streams.response()
        with pytest.raises(ValueError, match="Invalid channel"):
            streams.response("a b")


def test_one_process_uses_two_redis_connections_for_a_thousand_streams(
    tmp_path, redis_url
):
    import redis

    admin = redis.Redis.from_url(redis_url)
    # Count only this broker's connections: other processes may share Redis.
    name = f"test-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(redis_url, client_name=name)
    app = make_app(tmp_path, broker)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 0
    streams = EventStreams()
    with app.test_request_context():
        bodies = [iter(streams.response("activity").response) for _ in range(1000)]
    for body in bodies:
        assert next(body).startswith(b"retry:")
    event_id = broker.publish("activity", "to all")
    delivered = sum(1 for body in bodies if event_id.encode() in next(body))
    assert delivered == 1000
    mine = [c for c in admin.client_list() if c.get("name") == name]
    assert 1 <= len(mine) <= 2
    for body in bodies:
        body.close()
    assert broker._fan_out.count() == 0
    broker.close()
    admin.close()


def redis_stream_app(tmp_path, url):
    broker = RedisBroker(url, health_interval=0.2)
    app = make_app(tmp_path, broker)
    app.config["PATTERNS_STREAMS_HEARTBEAT"] = 0.05
    streams = EventStreams()
    app.add_url_rule("/s", "s", lambda: streams.response("activity"))
    return app, broker


def test_redis_restart_mid_stream_loses_no_event(tmp_path, redis_process):
    app, broker = redis_stream_app(tmp_path, redis_process.url)
    publisher = RedisBroker(redis_process.url)
    staying = open_stream(app, "/s")
    first = publisher.publish("activity", "before")
    assert staying.events(1)[0]["id"] == first

    redis_process.stop()
    with pytest.raises(BrokerUnavailable):
        publisher.publish("activity", "while down")
    redis_process.start()
    # Published before the subscriber is back: only the catch-up can deliver these.
    missed = [publisher.publish("activity", n) for n in range(3)]
    assert [e["id"] for e in staying.events(3)] == missed

    returning = open_stream(app, "/s", **{"Last-Event-ID": first})
    assert [e["id"] for e in returning.events(3)] == missed
    for reader in (staying, returning):
        reader.close()
    publisher.close()
    broker.close()


def test_a_half_open_subscriber_socket_is_noticed_and_replaced(
    tmp_path, redis_process, redis_relay
):
    relayed = f"redis://127.0.0.1:{redis_relay.port}/0"
    app, broker = redis_stream_app(tmp_path, relayed)
    publisher = RedisBroker(redis_process.url)
    reader = open_stream(app, "/s")
    assert broker.subscriber_connected(timeout=5)

    # Only the subscriber's socket stays open through the relay; it goes silent.
    broker.client.connection_pool.disconnect(inuse_connections=False)
    redis_relay.freeze()
    event_id = publisher.publish("activity", "after the freeze")
    # Pings every 0.2 s, unanswered for 0.6 s: the subscriber reconnects and
    # catches up from the stream history.
    assert reader.events(1, timeout=5)[0]["id"] == event_id
    reader.close()
    publisher.close()
    broker.close()


# Private channels


@pytest.fixture
def private_app(tmp_path):
    app = make_app(tmp_path, MemoryBroker(), public=("activity", "news:*"))
    streams = EventStreams()
    app.add_url_rule(
        "/streams/<path:names>", "s", lambda names: streams.response(*names.split(","))
    )
    with app.test_request_context():
        tokens = {
            "ada": streams.channel_token("user:ada"),
            "both": streams.channel_token("user:ada", "user:bob"),
        }
    return app, tokens


def status(app, path, **kwargs):
    response = app.test_client().get(path, buffered=False, **kwargs)
    code = response.status_code
    response.close()
    return code


def test_public_channels_need_no_token(private_app):
    app, _ = private_app
    assert status(app, "/streams/activity") == 200
    assert status(app, "/streams/news:today,activity") == 200


def test_private_channel_without_a_token_is_refused_before_streaming(private_app):
    app, _ = private_app
    response = app.test_client().get("/streams/user:ada")
    assert response.status_code == 403
    assert not response.content_type.startswith("text/event-stream")


@pytest.mark.parametrize("how", ["header", "cookie"])
def test_channel_token_in_a_header_or_cookie_grants_its_channels(private_app, how):
    app, tokens = private_app
    client = app.test_client()
    if how == "header":
        response = client.get(
            "/streams/user:ada,activity",
            headers={"X-Stream-Token": tokens["ada"]},
            buffered=False,
        )
    else:
        client.set_cookie("stream_token", tokens["ada"])
        response = client.get("/streams/user:ada,activity", buffered=False)
    assert response.status_code == 200
    response.close()


@pytest.mark.parametrize(
    ("path", "token", "expected"),
    [
        ("/streams/user:bob", "ada", 403),
        ("/streams/user:ada,user:bob", "ada", 403),
        ("/streams/user:ada,user:bob", "both", 200),
        ("/streams/user:ada", "tampered", 403),
        ("/streams/user:ada", "garbage", 403),
    ],
)
def test_tokens_grant_exactly_their_channels(private_app, path, token, expected):
    app, tokens = private_app
    value = {
        "tampered": tokens["ada"][:-2]
        + ("AA" if not tokens["ada"].endswith("AA") else "BB"),
        "garbage": "not a token",
    }.get(token, tokens.get(token))
    assert status(app, path, headers={"X-Stream-Token": value}) == expected


def test_expired_channel_token_is_refused(private_app, monkeypatch):
    app, tokens = private_app
    later = time.time() + app.config["PATTERNS_STREAMS_TOKEN_MAX_AGE"] + 10
    monkeypatch.setattr(time, "time", lambda: later)
    assert (
        status(app, "/streams/user:ada", headers={"X-Stream-Token": tokens["ada"]})
        == 403
    )


def test_brokers_on_different_redis_databases_never_see_each_others_events(
    tmp_path, redis_url
):
    import redis

    other_url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(other_url).flushdb()
    app, broker = redis_stream_app(tmp_path, redis_url)
    other = RedisBroker(other_url)
    reader = open_stream(app, "/s")
    other.publish("activity", "same channel, other database")
    mine = broker.publish("activity", "mine")
    assert reader.events(1) == [{"id": mine, "data": "mine"}]
    reader.close()
    other.close()
    broker.close()
    redis.Redis.from_url(other_url).flushdb()


def test_streams_are_reset_when_redis_loses_the_history_under_them(tmp_path, redis_url):
    import redis

    app, broker = redis_stream_app(tmp_path, redis_url)
    reader = open_stream(app, "/s")
    for n in range(3):
        broker.publish("activity", n)
    last = reader.events(3)[-1]["id"]
    redis.Redis.from_url(redis_url).flushdb()
    broker.publish("activity", "after the flush")  # id 1 again
    (hint,) = reader.frames(1)
    assert hint.startswith(b"retry: "), "the stream ends instead of starving"
    returning = open_stream(app, "/s", **{"Last-Event-ID": last})
    assert returning.events(1)[0]["event"] == "reset"
    returning.close()
    broker.close()


GEVENT_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import time

import gevent

from flask_patterns.streams import Listener, MemoryBroker

broker = MemoryBroker()
listeners = [Listener(["activity"]) for _ in range(200)]
for listener in listeners:
    broker.subscribe(listener)
received = {id(listener): [] for listener in listeners}


def consume(listener):
    while len(received[id(listener)]) < 10:
        stored = listener.next(timeout=5)
        assert stored is not None, "timed out"
        received[id(listener)].append(stored.data)


consumers = [gevent.spawn(consume, listener) for listener in listeners]
for n in range(10):
    broker.publish("activity", n)
    gevent.sleep(0.01)
gevent.joinall(consumers, timeout=10, raise_error=True)
assert all(r == [str(n) for n in range(10)] for r in received.values())

idle = Listener(["quiet"])
started = time.monotonic()
assert idle.next(timeout=0.2) is None
assert 0.15 < time.monotonic() - started < 2

waiter = gevent.spawn(idle.next, 30)
gevent.sleep(0.05)
idle.close()
assert waiter.get(timeout=1) is None and idle.interrupted()

# Subscribed listeners wait without a timer each: the broker's clock ends
# their waits, so a thousand waiting streams add no watcher to the loop.
loop = gevent.get_hub().loop
quiet = [Listener(["quiet"]) for _ in range(1000)]
for listener in quiet:
    broker.subscribe(listener)
gevent.sleep(0.3)
before = loop.activecnt
waits = [gevent.spawn(listener.next, 0.5) for listener in quiet]
gevent.sleep(0.1)
assert loop.activecnt - before < 10, loop.activecnt - before
started = time.monotonic()
gevent.joinall(waits, timeout=5)
assert all(w.ready() and w.value is None for w in waits)
assert 0.2 < time.monotonic() - started < 2
print("ok")
"""


GEVENT_PARKING_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import gevent
from gevent import threadpool

from flask_patterns.streams import Listener, MemoryBroker

broker = MemoryBroker()


def subscribed(channel="activity"):
    listener = Listener([channel])
    broker.subscribe(listener)
    return listener


# A greenlet killed while it waits leaves the others unharmed.
doomed, alive = subscribed(), subscribed()
waits = {"doomed": gevent.spawn(doomed.next, 30), "alive": gevent.spawn(alive.next, 30)}
gevent.sleep(0.05)
assert doomed._parked is not None and alive._parked is not None
waits["doomed"].kill()
assert doomed._parked is None
broker.publish("activity", "after the kill")
assert waits["alive"].get(timeout=2).data == "after the kill"
broker.unsubscribe(doomed)
broker.unsubscribe(alive)

# close() and unsubscribe() end a wait at once.
closing, leaving = subscribed(), subscribed()
waits = [gevent.spawn(closing.next, 30), gevent.spawn(leaving.next, 30)]
gevent.sleep(0.05)
closing.close()
broker.unsubscribe(leaving)
assert [w.get(timeout=2) for w in waits] == [None, None]
assert closing.interrupted()
broker.unsubscribe(closing)

# An event published from a native thread reaches parked greenlets.
listeners = [subscribed() for _ in range(50)]
waits = [gevent.spawn(x.next, 30) for x in listeners]
gevent.sleep(0.05)
pool = threadpool.ThreadPool(1)
pool.spawn(broker.publish, "activity", "from a thread").get(timeout=5)
assert [w.get(timeout=5).data for w in waits] == ["from a thread"] * 50
print("ok")
"""


def run_under_gevent(script: str) -> None:
    """Run ``script`` in a fresh, monkey-patched interpreter; it prints "ok"."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_parked_listeners_survive_kills_closes_and_other_threads_under_gevent():
    run_under_gevent(GEVENT_PARKING_SCRIPT)


def test_memory_broker_and_listeners_work_under_gevent():
    run_under_gevent(GEVENT_SCRIPT)


def test_a_subscribed_listener_times_out_on_the_brokers_clock():
    broker = MemoryBroker()
    listener = Listener(["a"])
    broker.subscribe(listener)
    started = time.monotonic()
    assert listener.next(timeout=0.2) is None
    assert 0.19 < time.monotonic() - started < 1
    assert listener.wake_at == math.inf
    broker.unsubscribe(listener)


def test_the_clock_stops_with_the_last_listener():
    broker = MemoryBroker()
    listeners = [Listener(["a"]), Listener(["b"])]
    for listener in listeners:
        broker.subscribe(listener)
    clock = broker._fan_out._clock
    assert clock is not None
    assert clock.is_alive()
    for listener in listeners:
        broker.unsubscribe(listener)
    clock.join(timeout=2)
    assert not clock.is_alive()
    assert broker._fan_out._clock is None
    # A new listener starts it again.
    broker.subscribe(listeners[0])
    assert listeners[0].next(timeout=0.05) is None
    broker.unsubscribe(listeners[0])


def test_a_zero_timeout_does_not_wait_for_the_clock():
    broker = MemoryBroker()
    listener = Listener(["a"])
    broker.subscribe(listener)
    started = time.monotonic()
    assert listener.next(timeout=0) is None
    assert time.monotonic() - started < 0.05
    broker.unsubscribe(listener)


def test_a_failed_clock_leaves_streams_on_timers(monkeypatch, caplog):
    broker = MemoryBroker()

    def broken() -> None:
        raise RuntimeError("the clock broke")

    monkeypatch.setattr(broker._fan_out, "_tick_until_idle", broken)
    listener = Listener(["a"])
    broker.subscribe(listener)
    deadline = time.monotonic() + 2
    while broker._fan_out._clock is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert broker._fan_out._clock is None
    assert "The stream clock failed" in caplog.text
    started = time.monotonic()
    assert listener.next(timeout=0.2) is None
    assert 0.15 < time.monotonic() - started < 2
    broker.publish("a", "still delivered")
    assert listener.next(timeout=1).data == "still delivered"
    broker.unsubscribe(listener)


def test_a_clock_that_cannot_start_fails_the_subscription_whole(monkeypatch):
    import threading

    class NoThreads(threading.Thread):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    monkeypatch.setattr("flask_patterns.streams.threading.Thread", NoThreads)
    broker = MemoryBroker()
    with pytest.raises(RuntimeError, match="start new thread"):
        broker.subscribe(Listener(["a"]))
    assert broker._fan_out.count() == 0
    assert broker._fan_out._clock is None


def test_unsubscribing_ends_a_wait_no_clock_would_end():
    import threading

    broker = MemoryBroker()
    listener = Listener(["a"])
    broker.subscribe(listener)
    threading.Timer(0.1, broker.unsubscribe, args=(listener,)).start()
    started = time.monotonic()
    assert listener.next(timeout=30) is None
    assert time.monotonic() - started < 5


def test_a_listener_wakes_for_an_offer_from_another_thread():
    import threading

    listener = Listener(["a"])
    stored = StoredEvent("1", "a", "x")
    threading.Timer(0.05, listener.offer, args=(stored,)).start()
    assert listener.next(timeout=5) is stored
    assert listener.next(timeout=0.01) is None
