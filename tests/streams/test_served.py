"""Streams served by a real gunicorn gevent worker, read by real sockets: a
client that never reads, and thousands of clients reconnecting at once."""

from __future__ import annotations

import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flask_patterns.streams import RedisBroker

HERE = Path(__file__).resolve().parent


class Served:
    """``served_app`` under ``gunicorn -k gevent -w 1`` on a free port."""

    def __init__(
        self, redis_url: str, port: int, log: Path, **settings: object
    ) -> None:
        env = {**os.environ, "REDIS_URL": redis_url}
        self.log = log.open("wb")
        env.update({f"STREAMS_{k.upper()}": str(v) for k, v in settings.items()})
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                "1",
                "--worker-connections",
                "10000",
                "--backlog",
                "4096",
                "--bind",
                f"127.0.0.1:{port}",
                "--chdir",
                str(HERE),
                "served_app:app",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.open_streams()
                return
            except OSError:
                assert self.process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn never listened"
                time.sleep(0.1)

    def open_streams(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/open")
            return int(connection.getresponse().read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def serve(redis_url, tmp_path):
    from conftest import free_port

    started = []

    def serve(**settings):
        log = tmp_path / f"gunicorn-{len(started)}.log"
        served = Served(redis_url, free_port(), log, **settings)
        started.append(served)
        return served

    yield serve
    for served in started:
        served.stop()


class Client:
    """One ``EventSource``, on a non-blocking socket: HTTP/1.0, so the body is
    the stream itself, parsed frame by frame."""

    def __init__(self, port: int, last_event_id: str | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        header = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.request = (
            f"GET /streams/activity HTTP/1.0\r\nHost: t\r\n{header}\r\n".encode()
        )
        self.buffer = b""
        self.head_done = False
        self.events: list[dict[str, str]] = []
        self.ended = False

    def send_request(self) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(self.request)
        self.sock.setblocking(False)

    def read(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            chunk = b""
        if not chunk:
            self.ended = True
            return
        self.buffer += chunk
        if not self.head_done:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            assert head.split(b"\r\n")[0].endswith(b" 200 OK"), head
            self.head_done, self.buffer = True, rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            fields = dict(
                line.split(": ", 1)
                for line in frame.decode().split("\n")
                if ": " in line and not line.startswith(":")
            )
            if "data" in fields or "event" in fields:
                self.events.append(fields)

    def close(self) -> None:
        self.sock.close()


def pump(clients, until, timeout):
    """Read every client until ``until()`` holds; returns the seconds it took."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    started = time.monotonic()
    try:
        while not until():
            assert time.monotonic() - started < timeout, "timed out"
            for key, _ in selector.select(timeout=0.2):
                key.data.read()
                if key.data.ended:
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
    return time.monotonic() - started


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
    while chunk := _recv_or_empty(stuck):
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


def _recv_or_empty(sock):
    try:
        return sock.recv(65536)
    except (ConnectionError, TimeoutError):
        return b""


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
