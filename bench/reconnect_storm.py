"""A reconnect storm after a stream-pool restart: how long until every client
has caught up, and how many were refused.

One gunicorn gevent worker (the stream pool's settings, as ``bench.streams``
starts it) serves ``bench.sse_apps:patterns_app()``. N clients, on raw
non-blocking sockets in one ``selectors`` loop, open ``/streams/activity`` and
receive 20 events. The worker is stopped (gunicorn's quick shutdown: every
stream cut at once), 20 more events are published while it is down, and a new
worker starts. Then every client reconnects at the same moment with its
``Last-Event-ID``, as browsers whose connection broke do. Measured: the time
from the first reconnection until the last client has every event it missed,
the refusals (a stream that ended before catching up: a ``retry:`` hint and
the end), resets, and events received twice or out of order (per client, all
should be 0). The baseline, in the same run and on the same worker: N fresh
clients (no ``Last-Event-ID``, nothing to replay) connecting at once, timed
until every one has its opening frame.

``python -m bench.reconnect_storm [--clients 10000]``; it prints the table and
rewrites its section of ``BENCHMARKS.md``. Redis database 14 of ``REDIS_URL``,
flushed first; traffic to 127.0.0.1 only; bounded in time.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import time
import typing as t
from pathlib import Path

import redis

from bench.report import add_report_options
from bench.report import machine
from bench.report import report_path
from bench.report import run_time
from bench.report import Section
from bench.sse_apps import CHANNEL
from bench.sse_apps import PREFIX
from bench.streams import gunicorn
from bench.streams import redis_database_url

SECTION = Section("reconnect-storm")


class Client:
    """One stream on a non-blocking socket, HTTP/1.0 so the body is the stream."""

    def __init__(self, port: int, last_event_id: str | None) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        header = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.request = f"GET /streams/{CHANNEL} HTTP/1.0\r\nHost: b\r\n{header}\r\n"
        self.sent = False
        self.buffer = b""
        self.opened = False
        self.ended = False
        self.ids: list[str] = []
        self.resets = 0
        self.sent_at: float | None = None
        self.done_at: float | None = None

    def write(self) -> None:
        try:
            self.sock.send(self.request.encode())
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.ended = True
        self.sent = True
        self.sent_at = time.monotonic()

    def read(self) -> None:
        try:
            chunk = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.ended = True
            return
        self.buffer += chunk
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            if b": open" in frame:
                self.opened = True
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    self.ids.append(line[4:].decode())
                elif line == b"event: reset":
                    self.resets += 1

    def close(self) -> None:
        self.sock.close()


def run(
    clients: list[Client], done: t.Callable[[Client], bool], timeout: float
) -> float:
    """Drive every client until ``done`` holds for each (or it ended); returns
    the seconds it took."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_WRITE, client)
    started = time.monotonic()
    waiting = len(clients)
    while waiting and time.monotonic() - started < timeout:
        for key, mask in selector.select(timeout=0.5):
            client = key.data
            if mask & selectors.EVENT_WRITE:
                client.write()
                selector.modify(client.sock, selectors.EVENT_READ, client)
                continue
            client.read()
            finished = client.ended or done(client)
            if finished and client.done_at is None:
                client.done_at = time.monotonic()
                waiting -= 1
            if client.ended:
                selector.unregister(client.sock)
    selector.close()
    return time.monotonic() - started


def publish(redis_url: str, count: int, first: int) -> list[str]:
    from flask_patterns.streams import RedisBroker

    broker = RedisBroker(redis_url, prefix=PREFIX)
    ids = [broker.publish(CHANNEL, {"seq": first + n}) for n in range(count)]
    broker.close()
    return ids


def storm(n: int, redis_url: str, log_dir: Path) -> dict[str, t.Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    env = {**os.environ, "BENCH_STREAMS_REDIS_URL": redis_url, "STREAM_ACCESS_LOG": ""}
    app = "bench.sse_apps:patterns_app()"
    with gunicorn(sys.executable, app, env, log_dir / "first.log") as (port, _):
        clients = []
        for start in range(0, n, 500):
            batch = [Client(port, None) for _ in range(min(500, n - start))]
            run(batch, lambda c: c.opened, timeout=60)
            clients += batch
        before = publish(redis_url, 20, 0)
        run_reading(clients, lambda c: c.ids[-1:] == [before[-1]], timeout=60)
    for c in clients:
        c.close()
    missed = publish(redis_url, 20, 20)
    with gunicorn(sys.executable, app, env, log_dir / "second.log") as (port, _):
        returning = [Client(port, c.ids[-1] if c.ids else None) for c in clients]
        took = run(returning, lambda c: c.ids[-1:] == [missed[-1]], timeout=300)
        caught = [c for c in returning if c.ids == missed and c.resets == 0]
        refused = sum(1 for c in returning if c.ended and c.ids[-1:] != [missed[-1]])
        wrong = sum(
            1
            for c in returning
            if c.ids and c.ids != missed[len(missed) - len(c.ids) :]
        )
        resets = sum(c.resets for c in returning)
        replay_times = served_times(returning)
        for c in returning:
            c.close()
        fresh = [Client(port, None) for _ in range(n)]
        baseline = run(fresh, lambda c: c.opened, timeout=300)
        opened = sum(1 for c in fresh if c.opened)
        fresh_times = served_times(fresh)
        for c in fresh:
            c.close()
    client.close()
    return {
        "clients": n,
        "connected": sum(1 for c in clients if c.ids[-1:] == [before[-1]]),
        "took": took,
        "caught": len(caught),
        "refused": refused,
        "wrong": wrong,
        "resets": resets,
        "baseline": baseline,
        "opened": opened,
        "replay_times": replay_times,
        "fresh_times": fresh_times,
    }


def served_times(clients: list[Client]) -> str:
    """p50 / p99 / max of each client's time from its request to done."""
    times = sorted(
        c.done_at - c.sent_at
        for c in clients
        if c.done_at is not None and c.sent_at is not None
    )
    if not times:
        return "-"

    def at(q: float) -> str:
        return f"{times[min(len(times) - 1, int(q * len(times)))] * 1000:.0f} ms"

    return f"{at(0.5)} / {at(0.99)} / {times[-1] * 1000:.0f} ms"


def run_reading(
    clients: list[Client], done: t.Callable[[Client], bool], timeout: float
) -> None:
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + timeout
    while not all(done(c) or c.ended for c in clients) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            key.data.read()
            if key.data.ended:
                selector.unregister(key.fileobj)
    selector.close()


def section(result: dict[str, t.Any]) -> str:
    n = result["clients"]
    now = run_time()
    return "\n".join(
        [
            SECTION.start,
            "## Reconnect storm after a stream-pool restart, one gevent worker",
            "",
            f"- Date: {now}",
            f"- Machine: {machine()}",
            "- Command: `python -m bench.reconnect_storm` (see its docstring for"
            " the method)",
            "",
            "| Storm | Clients | Streams open before the restart |"
            " All done after | Request to done per client, p50 / p99 / max |"
            " Caught up exactly (every missed event once, in order) | Refused |"
            " Resets | Received twice or out of order |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| reconnect with `Last-Event-ID`, 20 missed events | {n:,} |"
            f" {result['connected']:,} | **{result['took']:.1f} s** |"
            f" {result['replay_times']} | {result['caught']:,} |"
            f" **{result['refused']:,}** | {result['resets']:,} |"
            f" {result['wrong']:,} |",
            f"| baseline: fresh clients, nothing to replay (done = opening"
            f" frame) | {n:,} | - | {result['baseline']:.1f} s |"
            f" {result['fresh_times']} | {result['opened']:,} opened | - | - |"
            " - |",
            "",
            "*All done after* runs from the first connection attempt and includes"
            " the kernel's SYN retransmissions (1 s, 3 s, 7 s, ...) for"
            " connections beyond the listen backlog (gunicorn's 2,048 here); the"
            " per-client time runs from the request written to done, the"
            " server's share.",
            SECTION.end,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--redis-db", type=int, default=14)
    add_report_options(parser)
    args = parser.parse_args(argv)
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    url = redis_database_url(base, args.redis_db)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-reconnect-storm"
    log_dir.mkdir(exist_ok=True)
    result = storm(args.clients, url, log_dir)
    text = section(result)
    print(text)
    path = report_path(args)
    if path is not None:
        SECTION.write(path, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
