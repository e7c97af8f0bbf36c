"""Streams that leave their request under a real gunicorn gevent worker, read
over HTTP/1.1 by raw sockets whose chunked bodies are parsed strictly."""

from __future__ import annotations

import functools
import http.client
import json
import socket
import time

import conftest
import pytest

from flask_patterns.streams import RedisBroker
from flask_patterns.streams.detached import detachable
from flask_patterns.streams.detached import SPARE_FILES


def held(served):
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.request("GET", "/held")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


#: The root conftest's, within 10 s.
wait_until = functools.partial(conftest.wait_until, timeout=10.0)


def open_all(served, streams):
    """Wait until every stream has its opening frame and the worker counts
    them all; returns them."""
    for stream in streams:
        stream.read(lambda s: b": open\n\n" in s.raw)
    wait_until(lambda: served.open_streams() == len(streams))
    return streams


class Stream:
    """One HTTP/1.1 ``EventSource`` on a blocking socket."""

    def __init__(self, port: int, channels: str = "activity", rcvbuf: int = 0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            f"GET /streams/{channels} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        )
        self.raw = b""
        #: How many ``id:`` lines came, counted as they arrive.
        self.ids = 0
        self.eof = False

    def read(self, until, timeout=30.0, step=65536, pause=0.0):
        """Read until ``until(self)`` holds, the server closes, or time ends."""
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while not until(self) and not self.eof:
            assert time.monotonic() < deadline, "timed out"
            try:
                data = self.sock.recv(step)
            except TimeoutError:
                continue
            self.ids += (self.raw[-3:] + data).count(b"id: ")
            self.raw += data
            self.eof = not data
            if pause:
                time.sleep(pause)

    @property
    def head(self):
        return self.raw.partition(b"\r\n\r\n")[0].decode()

    def body(self):
        """The de-chunked body and whether the last chunk came; any framing
        error fails the test."""
        raw = self.raw
        at = raw.index(b"\r\n\r\n") + 4
        parts = []
        while at < len(raw):
            end = raw.find(b"\r\n", at)
            if end < 0:
                break
            size = int(raw[at:end], 16)
            if size == 0:
                assert raw[end:] == b"\r\n\r\n", "nothing after the last chunk"
                return b"".join(parts), True
            start = end + 2
            if len(raw) < start + size + 2:
                break
            assert raw[start + size : start + size + 2] == b"\r\n", "chunk ends"
            parts.append(raw[start : start + size])
            at = start + size + 2
        return b"".join(parts), False

    def frames(self):
        return self.body()[0].decode().split("\n\n")[:-1]

    def events(self):
        return [
            dict(line.split(": ", 1) for line in frame.split("\n"))
            for frame in self.frames()
            if frame.startswith(("id:", "event:"))
        ]

    def ended(self):
        return self.body()[1]

    def close(self):
        self.sock.close()


def test_http11_streams_leave_their_request_and_stay_well_framed(serve, redis_url):
    served = serve(heartbeat=0.3, queue_limit=10_000, write_timeout=120)
    idle = held(served)["greenlets"]
    # Readers that stop reading while 11 MB are published, more than the
    # socket buffers hold: the rest waits in each stream and goes out in
    # parts once they read again.
    slow = [Stream(served.port, rcvbuf=4096) for _ in range(3)]
    fast = [Stream(served.port) for _ in range(12)]
    streams = open_all(served, slow + fast)
    wait_until(lambda: held(served)["detached"] == 15)
    # The subscriber, the clock, this request: none kept per stream.
    assert held(served)["greenlets"] < idle + 8
    assert "Transfer-Encoding: chunked" in streams[0].head
    assert "Cache-Control: private, no-store" in streams[0].head

    broker = RedisBroker(redis_url)
    sizes = [10, 200_000, 10, 50_000, 1, 300_000] * 20
    ids = [
        broker.publish("activity", f"{n}:" + "x" * size) for n, size in enumerate(sizes)
    ]

    def all_ids(stream):
        return stream.ids == len(ids) and stream.raw.endswith(b"\n\r\n")

    for stream in fast:
        stream.read(all_ids, step=1 << 20)
    time.sleep(1)  # the slow streams' buffers fill up
    for stream in slow:
        stream.read(all_ids, step=1 << 20)
    for stream in streams:
        events = stream.events()
        assert [e["id"] for e in events] == ids, "every event, once, in order"
        assert [len(e["data"]) for e in events] == [
            len(f"{n}:") + size for n, size in enumerate(sizes)
        ]
    # Idle now: heartbeats keep coming, chunk-framed like the rest.
    stream = fast[0]
    before = stream.frames().count(":")
    stream.read(lambda s: s.frames().count(":") >= before + 2, timeout=5)
    for stream in streams:
        stream.close()
    broker.close()


def test_a_detached_stream_ends_after_its_lifetime_with_a_retry_hint(serve):
    served = serve(max_lifetime=1, heartbeat=5)
    stream = Stream(served.port)
    stream.read(lambda s: False, timeout=10)  # until the server closes
    assert stream.ended(), "the last chunk came"
    assert stream.frames()[-1].startswith("retry: ")
    assert 3000 <= int(stream.frames()[-1].split(": ")[1]) <= 12000
    wait_until(lambda: served.open_streams() == 0)
    wait_until(lambda: held(served)["detached"] == 0)
    stream.close()


def test_ending_a_channel_ends_its_detached_streams_only(serve):
    served = serve(heartbeat=5)
    ended, stays = open_all(
        served, [Stream(served.port, "a"), Stream(served.port, "b,c")]
    )
    wait_until(lambda: held(served)["detached"] == 2)
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection.request("POST", "/end/a")
    assert connection.getresponse().read() == b"ok"
    connection.close()
    ended.read(lambda s: False)
    assert ended.ended()
    assert ended.frames()[-1].startswith("retry: ")
    wait_until(lambda: held(served)["detached"] == 1)
    assert served.open_streams() == 1
    for stream in (ended, stays):
        stream.close()


def test_clients_that_leave_are_forgotten_at_the_next_heartbeat(serve):
    served = serve(heartbeat=0.3)
    streams = open_all(served, [Stream(served.port) for _ in range(20)])
    for stream in streams[:15]:
        stream.close()
    # The first write after the close meets a reset connection.
    wait_until(lambda: served.open_streams() == 5)
    wait_until(lambda: held(served)["detached"] == 5)
    for stream in streams[15:]:
        stream.close()


def test_a_stopped_worker_tells_its_detached_streams_when_to_come_back(serve):
    served = serve(heartbeat=5)
    streams = open_all(served, [Stream(served.port) for _ in range(50)])
    wait_until(lambda: held(served)["detached"] == 50)
    served.process.terminate()  # plain gunicorn: no stream pool hooks
    for stream in streams:
        stream.read(lambda s: False, timeout=20)
        assert stream.ended(), "the last chunk came"
        assert stream.frames()[-1].startswith("retry: ")
        stream.close()


def each_gets_one_event(redis_url, streams):
    """Publish one event; every stream gets it; close them."""
    broker = RedisBroker(redis_url)
    event = broker.publish("activity", "for every stream")
    for stream in streams:
        stream.read(lambda s: len(s.events()) == 1)
        assert stream.events()[0]["id"] == event
        stream.close()
    broker.close()


def test_with_detaching_off_each_stream_keeps_its_greenlet(serve, redis_url):
    served = serve(detach=0, heartbeat=0.5)
    streams = open_all(served, [Stream(served.port) for _ in range(30)])
    counts = held(served)
    assert counts["detached"] == 0
    assert counts["greenlets"] >= 30
    each_gets_one_event(redis_url, streams)


def test_past_its_file_budget_a_worker_keeps_streams_in_their_requests(
    serve, redis_url
):
    served = serve(open_files=SPARE_FILES + 20, heartbeat=5)
    streams = open_all(served, [Stream(served.port) for _ in range(30)])
    counts = held(served)
    assert counts["detached"] == 20, "as many as the files to spare allow"
    assert counts["greenlets"] >= 10, "the rest stay in their requests"
    each_gets_one_event(redis_url, streams)


def test_a_detached_stream_gives_its_clients_slot_back_when_it_ends(serve):
    served = serve(max_per_client=3, heartbeat=0.3)
    streams = open_all(served, [Stream(served.port) for _ in range(3)])
    refused = Stream(served.port)
    refused.read(lambda s: False, timeout=10)
    assert refused.head.startswith("HTTP/1.1 429 ")
    streams[0].close()
    # Noticed at the next heartbeat; the slot is free again.
    wait_until(lambda: served.open_streams() == 2)
    again = open_all(served, [Stream(served.port), *streams[1:]])[0]
    assert again.head.startswith("HTTP/1.1 200 ")
    for stream in [refused, again, *streams[1:]]:
        stream.close()


def plain_environ(**overrides):
    environ = {
        "SERVER_SOFTWARE": "gunicorn/27.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_METHOD": "GET",
        "gunicorn.socket": socket.socket(),
    }
    environ.update(overrides)
    return environ


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # not a gevent socket (no gevent here)
        {"SERVER_SOFTWARE": "Werkzeug/3.1"},
        {"REQUEST_METHOD": "HEAD"},
        {"SERVER_PROTOCOL": "HTTP/2"},
        {"CONTENT_LENGTH": "12"},
        {"HTTP_TRANSFER_ENCODING": "chunked"},
    ],
)
def test_only_a_bodiless_get_on_gunicorns_plain_gevent_socket_may_leave(overrides):
    environ = plain_environ(**overrides)
    try:
        assert detachable(environ) is None
    finally:
        environ["gunicorn.socket"].close()
