"""The load client of the event-stream benchmark (``bench.streams``).

It holds N ``text/event-stream`` responses open from ONE process and measures,
for every event and every stream, the time from publishing to delivery: each
event's JSON data carries the publisher's ``time.time()`` in ``t`` and its number
in ``seq``, and the client subtracts ``t`` from the moment the data reached it.

It is a single ``select.epoll`` loop over non-blocking raw sockets, with a
minimal HTTP/1.1 ``GET``, a de-chunker and a tiny SSE block parser (both servers
under test frame events with LF only). One process and one file descriptor per
stream keep 10,000 streams under a 20,000 descriptor limit. A read is stamped
with the time ``epoll`` reported it and parsed only after the measurement, so
the client's own parsing of a burst of 10,000 deliveries does not add to the
measured latency. While measuring, the client reads in rounds: once it has
drained what was ready it sleeps 1 ms before polling again. A client asleep in
``epoll_wait`` must be woken by each arriving segment, and over loopback the
sender pays for that: in a ``perf`` profile of the worker, waking the client
took 17 % of its CPU, a cost that clients on other machines never put on a
server. The rounds add up to 1 ms to what is measured, never take it off.

Streams are opened in batches. In ``opened`` mode a stream counts as connected
once its first SSE block arrived (flask-patterns sends ``retry:`` and a comment at
once); in ``written`` mode once the TCP connection is accepted and the request
written (Flask-SSE sends nothing, not even headers, before the first event).

Protocol with the driver: after the ramp the client prints one JSON line with
``"phase": "ready"``; it then records events until it reads ``stop`` on standard
input (or ``--max-seconds`` pass), closes every socket and prints one JSON line
with ``"phase": "done"`` and the measurements.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import resource
import select
import socket
import sys
import time
from collections import Counter

CONNECTING, SENT, OPEN, CLOSED = range(4)
# Chunk decoder states besides "bytes left in the current chunk".
NEED_SIZE, NEED_CRLF, FINISHED = 0, -1, -2
POLL_BATCH = 512
READ_ROUND = 0.001


class Stream:
    """One HTTP connection and its parser state."""

    __slots__ = (
        "body",
        "chunked",
        "framing",
        "headers_done",
        "left",
        "seen",
        "sock",
        "state",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = CONNECTING
        self.headers_done = False
        self.chunked = False
        self.left = NEED_SIZE
        self.framing = bytearray()
        self.body = bytearray()
        self.seen: set[int] = set()


def dechunk(stream: Stream, data: bytes) -> bytes:
    """Feed raw bytes of a chunked body, return the payload bytes completed."""
    buf = stream.framing
    buf += data
    out = bytearray()
    while buf and stream.left != FINISHED:
        if stream.left > 0:
            take = min(stream.left, len(buf))
            out += buf[:take]
            del buf[:take]
            stream.left -= take
            if stream.left == 0:
                stream.left = NEED_CRLF
            continue
        if stream.left == NEED_CRLF:
            if len(buf) < 2:
                break
            del buf[:2]
            stream.left = NEED_SIZE
            continue
        end = buf.find(b"\r\n")
        if end < 0:
            break
        size = int(bytes(buf[:end]).split(b";")[0], 16)
        del buf[: end + 2]
        stream.left = size if size else FINISHED
    return bytes(out)


class Client:
    """Opens the streams, reads them and keeps the latencies."""

    def __init__(self, host: str, port: int, path: str, mode: str) -> None:
        self.address = (host, port)
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        self.ready_state = OPEN if mode == "opened" else SENT
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.failures: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.latencies: dict[int, list[float]] = {}
        self.duplicates = 0
        self.bad_data = 0
        self.stopping = False
        self.measuring = False
        # While measuring, reads are kept raw and parsed after the stop.
        self.backlog: list[tuple[Stream, bytes, float]] = []

    # Opening streams.

    def open_one(self) -> Stream | None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as error:
            self.failures[f"socket(): {errno.errorcode.get(error.errno or 0)}"] += 1
            return None
        sock.setblocking(False)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            self.failures[f"connect: {errno.errorcode.get(code, code)}"] += 1
            sock.close()
            return None
        stream = Stream(sock)
        self.streams[sock.fileno()] = stream
        self.epoll.register(sock.fileno(), select.EPOLLOUT)
        return stream

    def ramp(self, total: int, batch: int, batch_timeout: float) -> None:
        """Open ``total`` streams, ``batch`` at a time, each batch waiting until
        all of its streams are connected or failed."""
        opened = 0
        while opened < total:
            group = [self.open_one() for _ in range(min(batch, total - opened))]
            opened += len(group)
            pending = [s for s in group if s is not None]
            deadline = time.monotonic() + batch_timeout
            while pending and time.monotonic() < deadline:
                self.poll(0.05)
                pending = [s for s in pending if self.pending(s)]
            for stream in pending:
                self.fail(stream, "not connected within the batch timeout")

    def pending(self, stream: Stream) -> bool:
        return stream.state != CLOSED and stream.state < self.ready_state

    def connected(self) -> list[Stream]:
        return [s for s in self.streams.values() if s.state >= self.ready_state]

    # The loop.

    def poll(self, timeout: float) -> int:
        events = self.epoll.poll(timeout, POLL_BATCH)
        now = time.time()
        for fd, mask in events:
            if fd == sys.stdin.fileno():
                self.read_command()
                continue
            stream = self.streams.get(fd)
            if stream is None:
                continue
            if stream.state == CONNECTING:
                self.finish_connect(stream, mask)
            else:
                self.receive(stream, now)
        return len(events)

    def finish_connect(self, stream: Stream, mask: int) -> None:
        code = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code or mask & (select.EPOLLERR | select.EPOLLHUP):
            self.fail(stream, f"connect: {errno.errorcode.get(code, code)}")
            return
        try:
            stream.sock.send(self.request)
        except OSError as error:
            self.fail(stream, f"send: {errno.errorcode.get(error.errno or 0)}")
            return
        stream.state = SENT
        self.epoll.modify(stream.sock.fileno(), select.EPOLLIN)

    def receive(self, stream: Stream, now: float) -> None:
        try:
            data = stream.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as error:
            self.fail(stream, f"recv: {errno.errorcode.get(error.errno or 0)}")
            return
        if not data:
            self.fail(stream, "closed by the server")
            return
        if self.measuring:
            self.backlog.append((stream, data, now))
        else:
            self.feed(stream, data, now)

    def parse_backlog(self) -> None:
        """Parse what was read while measuring, in the order it was read."""
        backlog, self.backlog = self.backlog, []
        stopping, self.stopping = self.stopping, False
        for stream, data, now in backlog:
            self.feed(stream, data, now)
        self.stopping = stopping

    def feed(self, stream: Stream, data: bytes, now: float) -> None:
        if not stream.headers_done:
            stream.framing += data
            end = stream.framing.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(stream.framing[:end])
            data = bytes(stream.framing[end + 4 :])
            stream.framing.clear()
            status = head.split(b" ", 2)[1].decode()
            if status != "200":
                self.fail(stream, f"HTTP {status}")
                return
            stream.headers_done = True
            stream.chunked = b"transfer-encoding: chunked" in head.lower()
        stream.body += dechunk(stream, data) if stream.chunked else data
        self.parse_blocks(stream, now)
        if stream.left == FINISHED:
            self.fail(stream, "response ended")

    def parse_blocks(self, stream: Stream, now: float) -> None:
        body = stream.body
        while (end := body.find(b"\n\n")) >= 0:
            block = bytes(body[:end])
            del body[: end + 2]
            if stream.state != CLOSED:
                stream.state = OPEN
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    self.record(stream, line[5:], now)

    def record(self, stream: Stream, value: bytes, now: float) -> None:
        try:
            payload = json.loads(value)
            seq, sent = int(payload["seq"]), float(payload["t"])
        except (ValueError, KeyError, TypeError):
            self.bad_data += 1
            return
        if seq in stream.seen:
            self.duplicates += 1
            return
        stream.seen.add(seq)
        self.latencies.setdefault(seq, []).append(now - sent)

    def fail(self, stream: Stream, reason: str) -> None:
        """Close a stream; a failure while measuring counts as a drop."""
        if stream.state == CLOSED:
            return
        counter = self.dropped if self.measuring else self.failures
        if not self.stopping:
            counter[reason] += 1
        stream.state = CLOSED
        self.streams.pop(stream.sock.fileno(), None)
        self.epoll.unregister(stream.sock.fileno())
        stream.sock.close()

    def read_command(self) -> None:
        line = os.read(sys.stdin.fileno(), 1024)
        if not line or b"stop" in line:
            self.stopping = True

    def run_until_stopped(self, max_seconds: float) -> None:
        self.measuring = True
        self.epoll.register(sys.stdin.fileno(), select.EPOLLIN)
        deadline = time.monotonic() + max_seconds
        while not self.stopping and time.monotonic() < deadline:
            # Drained what was ready: let more arrive before asking again
            # (see the module's docstring).
            if 0 < self.poll(0.2) < POLL_BATCH:
                time.sleep(READ_ROUND)
        self.stopping = True

    def close_all(self) -> None:
        for stream in list(self.streams.values()):
            self.fail(stream, "stopped")
        self.epoll.close()


# Results.


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(client: Client, window: float, streams: list[Stream]) -> dict[str, object]:
    every = sorted(x for values in client.latencies.values() for x in values)
    return {
        "phase": "done",
        "received": {s: len(v) for s, v in sorted(client.latencies.items())},
        "within_window": {
            s: sum(x <= window for x in v) for s, v in sorted(client.latencies.items())
        },
        "per_event": {
            s: [round(percentile(sorted(v), q), 4) for q in (0, 0.5, 0.99, 1)]
            for s, v in sorted(client.latencies.items())
        },
        "events_per_stream": dict(Counter(len(s.seen) for s in streams)),
        "p50": percentile(every, 0.50),
        "p90": percentile(every, 0.90),
        "p99": percentile(every, 0.99),
        "max": every[-1] if every else math.nan,
        "min": every[0] if every else math.nan,
        "pairs": len(every),
        "duplicates": client.duplicates,
        "bad_data": client.bad_data,
        "dropped": dict(client.dropped),
        "cpu_seconds": cpu_seconds(),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--mode", choices=("opened", "written"), default="opened")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batch-timeout", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        parser.error("the benchmark only sends traffic to 127.0.0.1")
    client = Client(args.host, args.port, args.path, args.mode)
    started = time.monotonic()
    client.ramp(args.streams, args.batch, args.batch_timeout)
    measured = client.connected()
    emit(
        {
            "phase": "ready",
            "connected": len(measured),
            "failures": dict(client.failures),
            "ramp_seconds": time.monotonic() - started,
            "cpu_seconds": cpu_seconds(),
        }
    )
    client.run_until_stopped(args.max_seconds)
    client.parse_backlog()
    client.close_all()
    emit(summary(client, args.window, measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
