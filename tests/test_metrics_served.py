"""The metrics of streams served by a real gunicorn gevent worker from Redis,
read over HTTP from its ``/metrics``, and of several gunicorn workers that
share one ``PROMETHEUS_MULTIPROC_DIR``, summed by one scrape."""

from __future__ import annotations

import http.client
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from conftest import wait_until

from flask_patterns import observe
from flask_patterns.streams import RedisBroker

from .scraping import scrape_url
from .streams.serving import Client
from .streams.serving import pump
from .streams.serving import Served

HERE = Path(__file__).resolve().parent
STREAM_CONF = HERE.parent / "deploy" / "gunicorn" / "stream.conf.py"
OPEN = "flask_patterns_streams_open"
SENT = "flask_patterns_stream_events_sent_total"
DELAY = "flask_patterns_stream_publish_to_send_seconds"
DISCONNECTS = "flask_patterns_stream_disconnects_total"
RESETS = "flask_patterns_stream_resets_total"
BROKER_UP = "flask_patterns_broker_up"
COMMITS = "flask_patterns_transactions_total"


@pytest.fixture
def serve(tmp_path):
    """Start ``metrics_app`` under gunicorn on Redis at ``url``; every server
    started stops at the end."""
    started = []

    def serve(url, env=None, **options):
        log = tmp_path / f"gunicorn-{len(started)}.log"
        env = {"METRICS_DATABASE_URL": f"sqlite:///{tmp_path}/served.db", **(env or {})}
        served = Served(
            url,
            free_port(),
            log,
            app="metrics_app:app",
            directory=HERE,
            env=env,
            **options,
        )
        served.metrics_url = f"http://127.0.0.1:{served.port}/metrics"
        started.append(served)
        return served

    yield serve
    for served in started:
        served.stop()


def post(served, path):
    request = urllib.request.Request(f"http://127.0.0.1:{served.port}{path}", b"")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def settles(served, name, value, **labels):
    """Wait until the served sample ``name`` is ``value``; the last scrape."""
    last = []

    def reached():
        last[:] = [scrape_url(served.metrics_url)]
        return last[0](name, **labels) == value

    wait_until(reached, f"{name}{labels} == {value}", timeout=15)
    return last[0]


def opened(served):
    """A stream of ``/streams/activity`` past its head."""
    client = Client(served.port)
    client.send_request()
    pump([client], lambda: client.head_done, timeout=10)
    return client


def test_a_served_stream_is_counted_open_sent_to_and_closed_by_its_client(
    serve, redis_url
):
    served = serve(redis_url, heartbeat=0.2)
    start = scrape_url(served.metrics_url)
    client = opened(served)
    settles(served, OPEN, start(OPEN) + 1)
    broker = RedisBroker(redis_url)
    for n in range(3):
        broker.publish("activity", n)
        pump([client], lambda n=n: len(client.events) == n + 1, timeout=10)
    broker.close()
    sent = settles(served, SENT, start(SENT) + 3)
    assert 1 <= sent.since(start, f"{DELAY}_count") <= 3, "once per write"
    assert 0 < sent.since(start, f"{DELAY}_sum") < 5
    client.close()
    closed = settles(served, OPEN, start(OPEN))
    assert closed.since(start, DISCONNECTS, reason="client") == 1
    others = set(observe.DISCONNECT_REASONS) - {"client"}
    assert {closed.since(start, DISCONNECTS, reason=r) for r in others} == {0}


def test_streams_ended_by_close_streams_are_counted_as_a_shutdown(serve, redis_url):
    served = serve(redis_url)
    start = scrape_url(served.metrics_url)
    clients = [opened(served), opened(served)]
    settles(served, OPEN, start(OPEN) + 2)
    assert post(served, "/close") == "2"
    pump(clients, lambda: all(c.ended for c in clients), timeout=10)
    closed = settles(served, OPEN, start(OPEN))
    assert closed.since(start, DISCONNECTS, reason="shutdown") == 2
    for client in clients:
        client.close()


def test_streams_that_reach_their_lifetime_are_counted_so(serve, redis_url):
    served = serve(redis_url, max_lifetime=0.5)
    start = scrape_url(served.metrics_url)
    client = opened(served)
    pump([client], lambda: client.ended, timeout=10)
    closed = settles(served, OPEN, start(OPEN))
    assert closed.since(start, DISCONNECTS, reason="lifetime") == 1
    client.close()


def test_a_client_from_a_history_the_broker_does_not_know_is_counted_as_a_reset(
    serve, redis_url
):
    served = serve(redis_url)
    start = scrape_url(served.metrics_url)
    client = Client(served.port, last_event_id="0123456789abcdef-42")
    client.send_request()
    pump([client], lambda: any(e.get("event") == "reset" for e in client.events), 10)
    assert scrape_url(served.metrics_url).since(start, RESETS) == 1
    client.close()


def test_broker_up_falls_to_0_while_redis_is_stopped_and_comes_back(
    serve, redis_process
):
    served = serve(redis_process.url)
    client = opened(served)
    assert scrape_url(served.metrics_url)(BROKER_UP) == 1
    redis_process.stop()
    assert scrape_url(served.metrics_url)(BROKER_UP) == 0
    redis_process.start()
    settles(served, BROKER_UP, 1)
    client.close()


@pytest.mark.skipif(not STREAM_CONF.exists(), reason="deploy/ is not in this tree")
def test_workers_sharing_a_multiprocess_dir_are_summed_by_one_scrape(
    serve, redis_url, tmp_path
):
    directory = tmp_path / "metrics"
    served = serve(
        redis_url,
        env={
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "STREAM_CONTROL_SOCKET": str(tmp_path / "stream.ctl"),
        },
        workers=2,
        config=STREAM_CONF,
    )
    start = scrape_url(served.metrics_url)
    by_worker: dict[str, int] = {}
    while len(by_worker) < 2:
        assert sum(by_worker.values()) < 500, f"one worker took all: {by_worker}"
        pid = post(served, "/write")
        by_worker[pid] = by_worker.get(pid, 0) + 1
    written = sum(by_worker.values())
    after = scrape_url(served.metrics_url)
    assert after.since(start, COMMITS, outcome="commit") == written

    # A stream in one worker shows in the scrapes of both; once that worker is
    # killed, gunicorn's child_exit hook drops it.
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.request("GET", "/streams/activity")
    holder = int(connection.getresponse().headers["X-Worker"])
    for _ in range(10):
        assert scrape_url(served.metrics_url)(OPEN) == 1
    os.kill(holder, signal.SIGKILL)
    after_kill = settles(served, OPEN, 0)
    connection.close()
    assert after_kill(COMMITS, outcome="commit") == after(COMMITS, outcome="commit")
    assert any(directory.iterdir())
