"""A broker on a Sentinel-managed Redis (the root conftest's
``sentinel_set``: a primary, a replica and three sentinels on free ports); the
primary is killed mid-stream."""

from __future__ import annotations

import json
import time
from unittest import mock

import pytest
import redis
from conftest import wait_until

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import Listener
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.replay import catch_up_frames


def test_publishing_and_streams_come_through_a_failover(sentinel_set):
    replica = sentinel_set.replica
    broker = RedisBroker(f"{sentinel_set.url}/0", health_interval=0.5)
    listener = Listener(["activity"])
    broker.subscribe(listener)
    assert broker.subscriber.wait_until_listening(10)
    before = [broker.publish("activity", f"before {n}") for n in range(5)]
    got = [listener.receive(5) for _ in before]
    assert [event.id for event in got if event] == before
    wait_until(lambda: redis.Redis(port=replica).dbsize() > 0, what="replication")

    sentinel_set.kill_primary()
    started = time.monotonic()
    after = None
    while after is None:
        assert time.monotonic() - started < 60, "publishing never resumed"
        try:
            after = broker.publish("activity", "after the failover")
        except BrokerUnavailable:
            time.sleep(0.2)
    role = redis.Redis(port=replica).info("replication")["role"]
    assert role == "master", "the replica was promoted and took the publish"
    broker.ping()  # what /readyz asks

    # The new primary is another server, so another history: the open stream
    # is ended to reconnect, never left with a silent gap...
    wait_until(lambda: listener.closing, what="the open stream to be ended")
    old_epoch = before[-1].rsplit("-", 1)[0]
    assert after.rsplit("-", 1)[0] != old_epoch
    # ...and its client, coming back with its last id, gets a reset.
    seen = (old_epoch, int(before[-1].rsplit("-", 1)[1]))
    replay = broker.replay(["activity"], seen[1])
    frames, _ = catch_up_frames(replay, seen)
    reset = frames[0].decode()
    assert reset.startswith("event: reset\n")
    assert json.loads(reset.split("data: ", 1)[1])["reason"] in (
        "unknown id",
        "history lost",
    )
    # A stream opened now gets the new primary's events live.
    fresh = Listener(["activity"])
    broker.subscribe(fresh)
    live = broker.publish("activity", "live on the new primary")
    assert fresh.receive(10).id == live
    broker.unsubscribe(fresh)
    broker.unsubscribe(listener)
    broker.subscriber.stop()
    broker.client.close()
    assert live.rsplit("-", 1)[0] == after.rsplit("-", 1)[0]


def test_a_client_of_the_apps_own_is_used_as_it_is(sentinel_set):
    from redis.sentinel import Sentinel

    sentinels = [("127.0.0.1", port) for port in sentinel_set.sentinels]
    client = Sentinel(sentinels).master_for(sentinel_set.service)
    broker = RedisBroker(client=client)
    assert broker.client is client
    event = broker.publish("activity", "through my client")
    assert [e.id for e in broker.replay(["activity"], 0).events] == [event]
    client.close()


def test_a_client_excludes_a_url_and_pool_settings():
    client = redis.Redis()
    with pytest.raises(TypeError, match="a url or a client, not both"):
        RedisBroker("redis://127.0.0.1", client=client)
    with pytest.raises(TypeError, match="configure the client"):
        RedisBroker(client=client, max_connections=5)
    with pytest.raises(TypeError, match="needs a url or a client"):
        RedisBroker()
    client.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel:///shop",
        "redis+sentinel://h:1/a/b/c",
    ],
)
def test_a_sentinel_url_without_hosts_or_service_is_refused_with_its_form(url):
    with pytest.raises(ValueError, match=r"redis\+sentinel://host:port"):
        RedisBroker(url)


def test_redis_cluster_is_refused_with_what_to_use_instead():
    from redis.cluster import RedisCluster

    with pytest.raises(ValueError, match="Sentinel for failover"):
        RedisBroker("redis+cluster://127.0.0.1:7000")
    cluster = mock.Mock(spec=RedisCluster)  # no node needed to refuse it
    with pytest.raises(ValueError, match="does not run on Redis Cluster"):
        RedisBroker(client=cluster)
