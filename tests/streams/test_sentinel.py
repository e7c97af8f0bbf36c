"""A broker on a Sentinel-managed Redis: a primary, a replica and three
sentinels started here on free ports; the primary is killed mid-stream."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from unittest import mock

import pytest
import redis

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import Listener
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.replay import catch_up_frames

SERVICE = "shop"


def start(*args, cwd):
    from conftest import service_missing

    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server is not installed")
    return subprocess.Popen([binary, *args], cwd=cwd, stdout=subprocess.DEVNULL)


def answers(port, command="PING"):
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as client:
            return client.execute_command(command)
    except redis.RedisError:
        return None


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def sentinel_set(tmp_path):
    """``(primary, replica, sentinels)``: their processes and ports."""
    from conftest import free_port

    processes = {}
    primary, replica = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    processes[primary] = start("--port", str(primary), *common, cwd=tmp_path)
    wait_until(lambda: answers(primary), what="the primary")
    processes[replica] = start(
        "--port",
        str(replica),
        *common,
        "--replicaof",
        "127.0.0.1",
        str(primary),
        cwd=tmp_path,
    )
    sentinels = [free_port() for _ in range(3)]
    for port in sentinels:
        config = tmp_path / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        processes[port] = start(str(config), "--sentinel", cwd=tmp_path)
    for port in sentinels:
        wait_until(lambda port=port: answers(port), what="a sentinel")

    def replicated():
        info = redis.Redis(port=replica).info("replication")
        return info.get("master_link_status") == "up"

    wait_until(replicated, what="the replica to sync")

    def sentinels_ready():
        # Each sentinel must know the replica (it asks the primary every 10 s)
        # and the other two (for the vote), or a failover cannot happen.
        for port in sentinels:
            with redis.Redis(port=port, decode_responses=True) as client:
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
            if len(replicas) != 1 or len(others) != 2:
                return False
        return True

    wait_until(sentinels_ready, what="the sentinels to know the replica and each other")
    yield primary, replica, sentinels, processes
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def sentinel_url(sentinels):
    hosts = ",".join(f"127.0.0.1:{port}" for port in sentinels)
    return f"redis+sentinel://{hosts}/{SERVICE}/0"


def test_publishing_and_streams_come_through_a_failover(sentinel_set):
    primary, replica, sentinels, processes = sentinel_set
    broker = RedisBroker(sentinel_url(sentinels), health_interval=0.5)
    listener = Listener(["activity"])
    broker.subscribe(listener)
    assert broker.subscriber.wait_until_listening(10)
    before = [broker.publish("activity", f"before {n}") for n in range(5)]
    got = [listener.receive(5) for _ in before]
    assert [event.id for event in got if event] == before
    wait_until(lambda: redis.Redis(port=replica).dbsize() > 0, what="replication")

    processes[primary].kill()
    processes[primary].wait(timeout=10)
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
    _, _, sentinels, _ = sentinel_set
    from redis.sentinel import Sentinel

    client = Sentinel([("127.0.0.1", port) for port in sentinels]).master_for(SERVICE)
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
