"""The broker on Redis: keys, the publish script, replay, and what it says when
Redis is away or answers an error."""

from __future__ import annotations

import uuid

import pytest

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import EventStreams
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
