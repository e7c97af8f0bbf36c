"""The broker on Redis: keys, the publish script, replay, and what it says when
Redis is away or answers an error."""

from __future__ import annotations

import uuid

import pytest

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import EventStreams
from flask_patterns.streams import parse_event_id
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.redis import KEY_TTL

from .conftest import make_app
from .conftest import open_stream
from .conftest import redis_stream_app


@pytest.fixture
def redis_broker(redis_url):
    broker = RedisBroker(redis_url, prefix="{limits}:", health_interval=0.5)
    yield broker
    broker.close()


def test_ping_and_publish_say_where_redis_is_when_it_is_down(redis_process):
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


def test_every_key_carries_the_prefix(redis_broker):
    import redis

    redis_broker.publish("activity", 1)
    client = redis.Redis.from_url(redis_broker.url)
    keys = sorted(key.decode() for key in client.scan_iter())
    assert keys == ["{limits}:history", "{limits}:sequence", "{limits}:stream:activity"]
    redis_broker.publish("activity", 2, key="k")
    assert client.exists("{limits}:published:k")
    assert 0 < client.ttl("{limits}:published:k") <= KEY_TTL
    database = redis_broker.url.rsplit("/", 1)[1]
    assert redis_broker.notify_key == f"{{limits}}:events@{database}"


def test_an_error_reply_in_the_replay_pipeline_is_raised_not_iterated(redis_broker):
    redis_broker.publish("activity", "kept")
    # A key of the wrong type where a channel's history should be: XRANGE
    # answers WRONGTYPE inside the pipeline.
    redis_broker.client.set(redis_broker.stream_key("orders"), "not a stream")
    with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
        redis_broker.replay(["activity", "orders"], 0)


def test_a_channel_without_history_replays_empty(redis_broker):
    replay = redis_broker.replay(["never-published"], 0)
    assert (replay.events, replay.reset) == ([], False)


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
        responses = [streams.response("activity") for _ in range(1000)]
    bodies = [iter(response.response) for response in responses]
    for body in bodies:
        assert next(body).startswith(b"retry:")
    event_id = broker.publish("activity", "to all")
    delivered = sum(1 for body in bodies if event_id.encode() in next(body))
    assert delivered == 1000
    mine = [c for c in admin.client_list() if c.get("name") == name]
    assert 1 <= len(mine) <= 2
    for response in responses:
        response.close()
    assert broker.open_listeners() == 0
    broker.close()
    admin.close()


def test_brokers_on_different_redis_databases_never_see_each_others_events(
    tmp_path, redis_url
):
    import redis

    other_url = redis_url.rsplit("/", 1)[0] + "/11"
    redis.Redis.from_url(other_url).flushdb()
    app, broker = redis_stream_app(tmp_path, redis_url)
    other = RedisBroker(other_url)
    reader = open_stream(app, "/streams/activity")
    other.publish("activity", "same channel, other database")
    mine = broker.publish("activity", "mine")
    assert reader.events(1) == [{"id": mine, "data": "mine"}]
    reader.close()
    other.close()
    broker.close()
    redis.Redis.from_url(other_url).flushdb()


def test_ending_a_channel_reaches_the_streams_of_other_processes(tmp_path, redis_url):
    # Two brokers on one Redis, as in two processes.
    publisher = RedisBroker(redis_url)
    app, listener_side = redis_stream_app(tmp_path, redis_url)
    private = open_stream(app, "/streams/activity,user:ada")
    other = open_stream(app, "/streams/user:bob")
    publisher.end_channel("user:ada")
    assert private.rest()[-1].startswith(b"retry: ")
    event_id = listener_side.publish("user:bob", "the other stream stays open")
    assert other.events(1)[0]["id"] == event_id
    for reader in (private, other):
        reader.close()
    publisher.close()
    listener_side.close()


def test_recent_reads_only_the_newest_entries_with_xrevrange(redis_process):
    import redis

    broker = RedisBroker(redis_process.url)
    for n in range(50):
        broker.publish("activity", n)
    admin = redis.Redis(port=redis_process.port)
    admin.config_resetstat()
    assert [e.data for e in broker.recent("activity", 3).events] == ["47", "48", "49"]
    stats = admin.info("commandstats")
    assert stats["cmdstat_xrevrange"]["calls"] == 1
    assert "cmdstat_xrange" not in stats, "never the whole history"
    admin.close()
    broker.close()


def test_recent_never_holds_an_event_past_the_id_it_resumes_from(redis_broker):
    import threading

    # Publishing on two channels while the history is read: an event the
    # stream would send again (past the id), or skip, cannot slip in.
    stop = threading.Event()

    def publish():
        while not stop.is_set():
            redis_broker.publish("activity", "a")
            redis_broker.publish("user:1", "b")

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        for _ in range(200):
            recent = redis_broker.recent("activity", 5)
            newest = parse_event_id(recent.last_event_id)[1]
            assert all(e.position <= newest for e in recent.events)
            if recent.events:
                # Only events of other channels may come after the newest shown.
                assert newest - recent.events[-1].position <= 1
    finally:
        stop.set()
        publisher.join()


def test_recent_raises_broker_unavailable_when_redis_is_down(redis_process):
    broker = RedisBroker(redis_process.url)
    broker.publish("activity", 1)
    redis_process.stop()
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{redis_process.port}"):
        broker.recent("activity", 5)
    broker.close()


def test_recent_raises_an_error_reply_as_broker_unavailable(redis_broker):
    redis_broker.client.set(redis_broker.stream_key("orders"), "not a stream")
    with pytest.raises(BrokerUnavailable, match="WRONGTYPE"):
        redis_broker.recent("orders", 5)


def test_recent_after_a_flush_is_a_new_history_that_streams_resume_without_reset(
    tmp_path, redis_url
):
    import redis

    app, broker = redis_stream_app(tmp_path, redis_url)
    before = broker.recent("activity", 5)
    broker.publish("activity", "lost")
    redis.Redis.from_url(redis_url).flushdb()
    after = broker.recent("activity", 5)
    assert after.events == []
    assert (
        parse_event_id(after.last_event_id)[0]
        != parse_event_id(before.last_event_id)[0]
    )
    reader = open_stream(app, f"/streams/activity?last_event_id={after.last_event_id}")
    live = broker.publish("activity", "after the flush")
    assert reader.events(1) == [{"id": live, "data": "after the flush"}]
    reader.close()
    broker.close()


@pytest.mark.parametrize("empty", [False, True], ids=["with-aof", "empty"])
def test_recent_after_a_restart_is_in_the_new_epoch(tmp_path, redis_process, empty):
    app, broker = redis_stream_app(tmp_path, redis_process.url)
    kept = [broker.publish("activity", n) for n in range(2)]
    before = broker.recent("activity", 5)
    assert [e.id for e in before.events] == kept
    redis_process.kill()
    redis_process.start(empty=empty)
    after = broker.recent("activity", 5)
    epoch, position = parse_event_id(after.last_event_id)
    assert epoch != parse_event_id(before.last_event_id)[0]
    # What the append-only file kept is shown in the new history, under ids
    # of that history; an emptied Redis starts again from nothing.
    assert [e.data for e in after.events] == ([] if empty else ["0", "1"])
    assert {e.epoch for e in after.events} <= {epoch}
    assert position == (0 if empty else 2)
    reader = open_stream(app, f"/streams/activity?last_event_id={after.last_event_id}")
    live = broker.publish("activity", "after the restart")
    assert reader.events(1) == [{"id": live, "data": "after the restart"}]
    reader.close()
    broker.close()
