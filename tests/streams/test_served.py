"""Streams served by a real gunicorn gevent worker, read by real sockets: a
client that never reads, and thousands of clients reconnecting at once."""

from __future__ import annotations

import json
import socket
import time

from flask_patterns.streams import RedisBroker

from .serving import Client
from .serving import pump
from .serving import recv_or_empty


def test_a_client_that_never_reads_is_cut_and_the_others_get_everything(
    serve, redis_url
):
    served = serve(write_timeout=1, queue_limit=100_000, heartbeat=0.5)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", served.port))
    stuck.sendall(b"GET /streams/activity HTTP/1.0\r\nHost: t\r\n\r\n")
    reader = Client(served.port)
    reader.send_request()
    pump([reader], lambda: reader.head_done, timeout=10)
    assert served.open_streams() == 2

    broker = RedisBroker(redis_url)
    # 4.8 MB: far more than the stuck socket's buffers hold.
    ids = [broker.publish("activity", f"{n}:" + "x" * 16_000) for n in range(300)]
    pump([reader], lambda: len(reader.events) == 300, timeout=30)
    assert [e["id"] for e in reader.events] == ids, "every event, once, in order"

    deadline = time.monotonic() + 10
    while served.open_streams() != 1:
        assert time.monotonic() < deadline, "the stuck stream is still open"
        time.sleep(0.1)
    # The server gave up on it: after what the buffers held, the stream ends.
    stuck.settimeout(10)
    received = 0
    while chunk := recv_or_empty(stuck):
        received += len(chunk)
    assert 0 < received < 4_000_000
    later = broker.publish("activity", "the reader stays")
    pump([reader], lambda: reader.events[-1]["id"] == later, timeout=10)
    stuck.close()
    reader.close()
    broker.close()


def test_without_a_write_deadline_the_stuck_client_stays(serve, redis_url):
    served = serve(write_timeout=0, queue_limit=100_000, heartbeat=0.5)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", served.port))
    stuck.sendall(b"GET /streams/activity HTTP/1.0\r\nHost: t\r\n\r\n")
    broker = RedisBroker(redis_url)
    deadline = time.monotonic() + 10
    while served.open_streams() != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for n in range(300):
        broker.publish("activity", f"{n}:" + "x" * 16_000)
    time.sleep(3)
    assert served.open_streams() == 1, "blocked in its write, never noticed"
    stuck.close()
    broker.close()


STORM = 2000


def test_two_thousand_clients_reconnecting_at_once_all_get_their_replay(
    serve, redis_url
):
    served = serve(heartbeat=5)
    broker = RedisBroker(redis_url)
    ids = [broker.publish("activity", f"event {n}") for n in range(100)]
    epoch = ids[0].rsplit("-", 1)[0]
    hostile = ["x", "-1", str(2**64), f"{epoch}-{2**64}", f"other-{50}", "ab-" + "9"]
    clients = []
    for n in range(STORM):
        if n % 100 == 0:
            clients.append(Client(served.port, hostile[(n // 100) % len(hostile)]))
        else:
            clients.append(Client(served.port, ids[n % 100]))
    time.sleep(0.5)  # connected (the backlog holds them all)
    for client in clients:
        client.send_request()

    def expected(client):
        last_event_id = client.request.split(b"Last-Event-ID: ")[1].split(b"\r")[0]
        if last_event_id.decode() in ids:
            return ids[ids.index(last_event_id.decode()) + 1 :]
        return None  # a reset

    def caught_up(client):
        if client.ended:  # refused: a retry hint and the end
            return True
        want = expected(client)
        if want is None:
            return len(client.events) >= 1
        return len(client.events) >= len(want)

    took = pump(clients, lambda: all(caught_up(c) for c in clients), timeout=120)
    ended = [c for c in clients if c.ended]
    assert ended == [], f"{len(ended)} of {STORM} refused"
    print(f"{STORM} clients caught up in {took:.1f} s")

    live = [broker.publish("activity", f"live {n}") for n in range(5)]
    pump(
        clients,
        lambda: all(c.events[-1:] and c.events[-1]["id"] == live[-1] for c in clients),
        timeout=60,
    )
    for client in clients:
        got = [e["id"] for e in client.events]
        want = expected(client)
        if want is None:
            reset = client.events[0]
            assert reset["event"] == "reset"
            assert json.loads(reset["data"])["reason"] in ("unknown id", "history lost")
            assert reset["id"] == ids[-1]
            assert got[1:] == live
        else:
            assert got == want + live, "every event exactly once, in order"
        client.close()
    broker.close()
