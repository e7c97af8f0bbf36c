"""Requests per second of the product page through nginx, with and without 5,000
open event streams on the stream pool of the same machine.

``deploy/up.py`` (what ``make up`` runs) starts the whole topology on free ports
of 127.0.0.1, against a fresh PostgreSQL database (``storefront_bench_<hex>``,
dropped at the end) and a Redis database of its own (``--redis-db``, 10 by
default, flushed before and after): nginx in front, the gunicorn gthread web
pool (``WEB_WORKERS``, its default unless set), ONE gunicorn gevent stream worker
(``STREAM_WORKERS=1``) and the outbox worker.

Rounds alternate between two conditions, *without* streams first:

- *without*: no stream is open; ``wrk -t1 -c16 -d10s --latency`` loads
  ``GET /products/1`` through nginx;
- *with*: the epoll load client of the stream benchmark (``bench.sse_client``,
  a subprocess) opens 5,000 ``GET /streams/activity`` through nginx and waits
  until every one has received its first frame; a publisher process (``python -m
  bench.topology publish``) sends one event a second to channel ``activity``
  with ``RedisBroker(STOREFRONT_REDIS_URL).publish``; the same wrk run follows.
  The publisher then stops, the client keeps reading for the delivery window
  and closes every stream, and the next round waits until nginx and the stream
  worker hold none.

The figures are the medians of the rounds; the target is a product page
throughput with the streams open of at least 80 % of the one without. The
client reports the delivery and latency of the events during the *with* rounds;
nginx's and the stream worker's connections are counted from ``/proc`` in the
middle of each wrk run.

Why: the stream pool is a separate process so that thousands of long-lived
connections never take a web worker; on one machine they still share nginx and
the CPUs, and this measures what that costs the pages.

Run it with ``make bench-topology`` (or ``make bench``); it needs nginx, wrk,
PostgreSQL (``STOREFRONT_DATABASE_URL``'s server, default 127.0.0.1) and Redis
(``REDIS_URL``, default ``redis://127.0.0.1:6379``), prints a table and rewrites
its own section of ``BENCHMARKS.md``. It takes about four minutes and sends
traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import secrets
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path

from deploy.launch import launch
from deploy.launch import Launched
from deploy.launch import stop

from bench.jsonlines import JsonLines
from bench.procfs import busy_seconds
from bench.procfs import children
from bench.procfs import established
from bench.procfs import own_cpu
from bench.procfs import socket_inodes
from bench.procfs import tree_cpu
from bench.report import add_report_options
from bench.report import echoed_arguments
from bench.report import free_port
from bench.report import machine
from bench.report import report_path
from bench.report import run_time
from bench.report import Section
from bench.streams import cell
from bench.streams import counts
from bench.streams import flask_patterns_version
from bench.streams import ms
from bench.streams import percent
from bench.streams import redis_database_url

ROOT = Path(__file__).resolve().parent.parent
SECTION = Section("topology")
PAGE = "/products/1"
STREAM_PATH = "/streams/activity"
CHANNEL = "activity"
TARGET = 0.80
CONDITIONS = ("without", "with")
VERSIONS = ("Flask", "Werkzeug", "gunicorn", "gevent", "greenlet", "redis")


@dataclass
class Settings:
    rounds: int
    duration: int
    connections: int
    streams: int
    batch: int
    settle: float
    window: float
    redis_url: str
    database_url: str
    arguments: str = ""
    machine: str = ""
    software: str = ""
    pools: dict[str, str] = field(default_factory=dict)


Topology = Launched


@dataclass
class Wrk:
    rps: float
    latency_ms: dict[str, float]
    requests: int
    errors: dict[str, int]


@dataclass
class Delivery:
    """What the load client saw of the events during one *with* round."""

    streams: int
    connected: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    ramp_seconds: float = 0.0
    published: int = 0
    publish_errors: dict[str, int] = field(default_factory=dict)
    in_window: int = 0
    received: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        expected = self.published * self.streams
        return self.in_window / expected if expected else 0.0

    @property
    def received_share(self) -> float:
        expected = self.published * self.streams
        return self.received / expected if expected else 0.0


@dataclass
class Round:
    number: int
    condition: str
    wrk: Wrk
    connections: dict[str, int]
    cpu: dict[str, float]
    booted: int = 0
    delivery: Delivery | None = None


# Processes and /proc.


def connections(top: Topology) -> dict[str, int]:
    """Established connections of nginx's workers and of the stream workers."""
    table = established()
    nginx = [table[i] for i in socket_inodes(children(top.pids["nginx"])) if i in table]
    stream = socket_inodes(children(top.pids["stream"]))
    return {
        "clients-nginx": sum(local == top.listen_port for local, _ in nginx),
        "nginx-stream": sum(remote == top.stream_port for _, remote in nginx),
        "nginx-web": sum(remote == top.web_port for _, remote in nginx),
        "stream-worker": sum(
            table[i][0] == top.stream_port for i in stream if i in table
        ),
    }


# The topology.


def database_url(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    if (parts.hostname or "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"PostgreSQL must run on this machine, not {parts.hostname}.")
    name = f"storefront_bench_{secrets.token_hex(5)}"
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def admin_connection(url: str) -> t.Any:
    import psycopg
    import sqlalchemy as sa

    admin = sa.make_url(url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True)


def drop_database(url: str) -> None:
    import sqlalchemy as sa

    name = sa.make_url(url).database
    with contextlib.suppress(Exception), admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def start(settings: Settings, run_dir: Path) -> Topology:
    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": settings.database_url,
        "STOREFRONT_REDIS_URL": settings.redis_url,
        "STREAM_WORKERS": "1",
        # Every stream of the load client comes from 127.0.0.1: lift the caps
        # on streams per address (nginx) and per client (the app).
        "NGINX_STREAMS_PER_ADDRESS": "65535",  # nginx's largest
        "STOREFRONT_PATTERNS_STREAMS_MAX_PER_CLIENT": "0",
    }
    return launch(
        listen_port=free_port(),
        web_port=free_port(),
        stream_port=free_port(),
        run_dir=run_dir,
        env=env,
    )


@contextlib.contextmanager
def topology(settings: Settings, run_dir: Path) -> t.Iterator[Topology]:
    flush_redis(settings.redis_url)
    top = None
    try:
        top = start(settings, run_dir)
        yield top
    finally:
        left = stop(top) if top is not None else []
        drop_database(settings.database_url)
        flush_redis(settings.redis_url)
        if left:
            print(f"Still running after up.py stopped: {', '.join(left)}")


def check_page(top: Topology) -> None:
    with urllib.request.urlopen(top.url + PAGE, timeout=10) as response:
        if response.status != 200 or b"<html" not in response.read().lower():
            raise SystemExit(f"{PAGE} did not answer a page through nginx.")


def pools(top: Topology) -> dict[str, str]:
    conf = (top.run_dir / "nginx.conf").read_text()
    values = dict(re.findall(r"^\s*(worker_\w+)\s+(\S+);", conf, re.MULTILINE))
    return {
        "web workers (gthread)": str(len(children(top.pids["web"]))),
        "stream workers (gevent)": str(len(children(top.pids["stream"]))),
        "nginx workers": str(len(children(top.pids["nginx"]))),
        "nginx worker_connections": values.get("worker_connections", "?"),
        "nginx worker_rlimit_nofile": values.get("worker_rlimit_nofile", "?"),
    }


# Load: wrk, the stream client and the publisher.


_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


def wrk_command(url: str, settings: Settings, duration: int) -> list[str]:
    return [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(settings.connections),
        "--duration",
        f"{duration}s",
        "--latency",
        url,
    ]


def parse_wrk(output: str) -> Wrk:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    if rps is None or total is None or len(latency) != 3:
        raise RuntimeError(f"Cannot read wrk's output:\n{output}")
    errors: dict[str, int] = {}
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors["non-2xx"] = int(non_2xx[1])
    sockets = _SOCKET_ERRORS.search(output)
    if sockets:
        names = ("connect", "read", "write", "timeout")
        for name, value in zip(names, sockets.groups(), strict=True):
            if int(value):
                errors[name] = int(value)
    return Wrk(float(rps[1]), latency, int(total[1]), errors)


def run_wrk(
    top: Topology, settings: Settings, duration: int
) -> tuple[Wrk, dict[str, int]]:
    """Run wrk; count the connections halfway through."""
    process = subprocess.Popen(
        wrk_command(top.url + PAGE, settings, duration),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(duration / 2)
    counted = connections(top)
    output, _ = process.communicate(timeout=duration + 60)
    if process.returncode:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output}")
    return parse_wrk(output), counted


def stream_client(top: Topology, settings: Settings) -> JsonLines:
    return JsonLines(
        "stream client",
        [
            sys.executable,
            "-m",
            "bench.sse_client",
            f"--port={top.listen_port}",
            f"--path={STREAM_PATH}",
            f"--streams={settings.streams}",
            "--mode=opened",
            f"--batch={settings.batch}",
            "--batch-timeout=30",
            f"--window={settings.window}",
            f"--max-seconds={settings.duration + 120}",
        ],
    )


def publisher(settings: Settings) -> JsonLines:
    return JsonLines(
        "publisher",
        [
            sys.executable,
            "-m",
            "bench.topology",
            "publish",
            f"--redis-url={settings.redis_url}",
            f"--max-seconds={settings.duration + 120}",
        ],
    )


def wait_for_streams(top: Topology, at_least: int, at_most: int) -> dict[str, int]:
    """Wait (30 s at most) until nginx holds between ``at_least`` and
    ``at_most`` connections to the stream pool, and the stream workers too."""
    deadline = time.monotonic() + 30
    while True:
        counted = connections(top)
        held = (counted["nginx-stream"], counted["stream-worker"])
        if all(at_least <= n <= at_most for n in held):
            return counted
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stream connections did not settle: {counted}")
        time.sleep(0.5)


# Rounds.


@dataclass
class Reading:
    wall: float
    totals: dict[str, float]
    # The Redis server and the PostgreSQL processes, by pid: backends come and
    # go as web workers are recycled.
    services: dict[int, float]


@dataclass
class CpuMeter:
    """CPU seconds of nginx, each pool, this benchmark and the machine."""

    top: Topology
    postgres: t.Any
    database: str

    def postgres_pids(self) -> list[int]:
        rows = self.postgres.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s OR datname IS NULL"
            " OR pid = pg_backend_pid()",
            (self.database,),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def read(self, redis_pid: int, load: list[int]) -> Reading:
        """``load``: the stream client and the publisher, if running."""
        services = own_cpu([redis_pid, *self.postgres_pids()])
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        totals = {
            "machine": busy_seconds(),
            "nginx": tree_cpu(self.top.pids["nginx"]),
            "web": tree_cpu(self.top.pids["web"]),
            "stream": tree_cpu(self.top.pids["stream"]),
            # Only wrk ends, and is reaped, during a measured run.
            "wrk": reaped.ru_utime + reaped.ru_stime,
            "load": sum(tree_cpu(pid) for pid in load),
            "ours": tree_cpu(os.getpid()),
        }
        return Reading(time.monotonic(), totals, services)


def cpu_share(start: Reading, end: Reading) -> dict[str, float]:
    """Cores used in between; *outside* is the machine's busy time minus that
    of every process of the benchmark. A service process that exited in
    between is left out; one that started counts whole."""
    wall = end.wall - start.wall
    used = {k: (end.totals[k] - start.totals[k]) / wall for k in start.totals}
    services = sum(v - start.services.get(p, 0.0) for p, v in end.services.items())
    used["ours"] += services / wall
    used["outside"] = max(0.0, used["machine"] - used["ours"])
    return used


def measured_round(
    number: int,
    condition: str,
    top: Topology,
    settings: Settings,
    meter: CpuMeter,
    load: list[int],
) -> Round:
    redis_pid = redis_server_pid(settings.redis_url)
    log = top.run_dir / "up.log"
    offset = log.stat().st_size
    before = meter.read(redis_pid, load)
    result, counted = run_wrk(top, settings, settings.duration)
    cpu = cpu_share(before, meter.read(redis_pid, load))
    booted = booted_workers(log, offset)
    return Round(number, condition, result, counted, cpu, booted)


def booted_workers(log: Path, offset: int) -> int:
    """Workers gunicorn started after ``offset`` of its log: a web worker
    recycled after ``max_requests`` is replaced by a new one."""
    with log.open("rb") as file:
        file.seek(offset)
        return file.read().count(b"Booting worker with pid")


def without_round(
    number: int, top: Topology, settings: Settings, meter: CpuMeter
) -> Round:
    wait_for_streams(top, 0, 0)
    return measured_round(number, "without", top, settings, meter, [])


def with_round(
    number: int, top: Topology, settings: Settings, meter: CpuMeter
) -> Round:
    delivery = Delivery(settings.streams)
    client = stream_client(top, settings)
    sender: JsonLines | None = None
    try:
        opened(delivery, client.read(timeout=settings.streams / settings.batch * 30))
        wait_for_streams(top, delivery.connected, settings.streams)
        sender = publisher(settings)
        time.sleep(settings.settle)
        load = [client.process.pid, sender.process.pid]
        result = measured_round(number, "with", top, settings, meter, load)
        published(delivery, sender.stop(timeout=30))
        time.sleep(settings.window + 1)
        delivered(delivery, client.stop(timeout=60))
    finally:
        client.close()
        if sender is not None:
            sender.close()
    result.delivery = delivery
    return result


def opened(delivery: Delivery, ready: dict[str, t.Any]) -> None:
    delivery.connected = int(ready["connected"])
    delivery.failures = ready["failures"]
    delivery.ramp_seconds = float(ready["ramp_seconds"])


def published(delivery: Delivery, done: dict[str, t.Any]) -> None:
    delivery.published = int(done["published"])
    delivery.publish_errors = done["errors"]


def delivered(delivery: Delivery, done: dict[str, t.Any]) -> None:
    delivery.in_window = sum(done["within_window"].values())
    delivery.received = sum(done["received"].values())
    delivery.latency = {k: float(done[k]) for k in ("p50", "p90", "p99", "max")}
    delivery.dropped = done["dropped"]
    for name in ("duplicates", "bad_data"):
        if done[name]:
            delivery.dropped[name.replace("_", " ")] = int(done[name])


def redis_server_pid(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def measure(top: Topology, settings: Settings) -> list[Round]:
    import sqlalchemy as sa

    database = str(sa.make_url(settings.database_url).database)
    rounds: list[Round] = []
    with admin_connection(settings.database_url) as postgres:
        meter = CpuMeter(top, postgres, database)
        run_wrk(top, settings, 3)  # warm-up: imports, caches, database pools
        for number in range(1, settings.rounds + 1):
            for condition in CONDITIONS:
                run = with_round if condition == "with" else without_round
                rounds.append(run(number, top, settings, meter))
                print(progress(rounds[-1]), flush=True)
    return rounds


# Logs.


_NGINX_LINE = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$")


def nginx_log(run_dir: Path) -> bytes:
    with contextlib.suppress(OSError):
        return (run_dir / "nginx-error.log").read_bytes()
    return b""


def nginx_errors(text: bytes) -> dict[str, int]:
    """nginx's error log, by level and message (without client details)."""
    found: Counter[str] = Counter()
    for line in text.decode(errors="replace").splitlines():
        match = _NGINX_LINE.match(line)
        if match:
            message = re.sub(r", (client|server|host): [^,]*", "", match[2])
            found[f"[{match[1]}] {message}"[:200]] += 1
    return dict(found.most_common(8))


_APP_PROBLEM = re.compile(r"\[(ERROR|CRITICAL)\]|^Traceback|^[\w.]+(Error|Exception): ")


def app_errors(run_dir: Path) -> dict[str, int]:
    """Errors that gunicorn, the app or the worker wrote to up.py's output."""
    found: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in (run_dir / "up.log").read_text(errors="replace").splitlines():
            if _APP_PROBLEM.search(line):
                found[re.sub(r"^\[[^]]*\] \[\d+\] ", "", line)[:160]] += 1
    return dict(found.most_common(8))


# The publisher (``python -m bench.topology publish``).


def publish_main(argv: list[str]) -> int:
    """Publish ``{"t", "seq", "text"}`` to ``activity`` once a second until
    ``stop`` on standard input; print one JSON line."""
    from flask_patterns.streams import RedisBroker

    parser = argparse.ArgumentParser(prog="bench.topology publish")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    broker = RedisBroker(args.redis_url)
    errors: Counter[str] = Counter()
    seq, start = 0, time.monotonic()
    while time.monotonic() - start < args.max_seconds:
        try:
            broker.publish(CHANNEL, {"t": time.time(), "seq": seq, "text": "bench"})
            seq += 1
        except Exception as error:
            errors[f"{type(error).__name__}: {error}"[:160]] += 1
        if stop_requested(start + (seq + sum(errors.values())) * args.interval):
            break
    broker.close()
    print(json.dumps({"published": seq, "errors": dict(errors)}), flush=True)
    return 0


def stop_requested(until: float) -> bool:
    """Wait until the monotonic time ``until``; whether ``stop`` came meanwhile."""
    ready, _, _ = select.select([sys.stdin], [], [], max(0.0, until - time.monotonic()))
    return bool(ready) and (not (line := sys.stdin.readline()) or "stop" in line)


# The report.


def median(
    rounds: list[Round], condition: str, value: t.Callable[[Round], float]
) -> float:
    return statistics.median(value(r) for r in rounds if r.condition == condition)


def ratio(rounds: list[Round]) -> float:
    rps = [median(rounds, c, lambda r: r.wrk.rps) for c in CONDITIONS]
    return rps[1] / rps[0]


def pair_ratios(rounds: list[Round]) -> list[float]:
    by = {(r.number, r.condition): r.wrk.rps for r in rounds}
    numbers = sorted({r.number for r in rounds})
    return [by[n, "with"] / by[n, "without"] for n in numbers]


def progress(r: Round) -> str:
    line = (
        f"round {r.number} {r.condition:<7} {r.wrk.rps:8.0f} req/s"
        f"  p50 {r.wrk.latency_ms['50']:.1f} ms  p99 {r.wrk.latency_ms['99']:.1f} ms"
        f"  streams via nginx {r.connections['nginx-stream']:,}"
        f"  outside CPU {percent(r.cpu['outside'])}"
    )
    if r.wrk.errors:
        line += f"  wrk errors {r.wrk.errors}"
    d = r.delivery
    if d is not None:
        line += (
            f"  | {d.connected:,} connected, {d.published} events,"
            f" {percent(d.share)} delivered, p99 {ms(d.latency.get('p99'))}"
        )
    return line


def condition_label(condition: str, settings: Settings) -> str:
    if condition == "with":
        return f"with {settings.streams:,} streams"
    return "without streams"


def summary_table(rounds: list[Round], settings: Settings) -> list[str]:
    lines = [
        "| Product page | Rounds | req/s (median) | p50 | p90 | p99 | wrk errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in CONDITIONS:
        ours = [r for r in rounds if r.condition == c]
        lat = {
            q: statistics.median(r.wrk.latency_ms[q] for r in ours)
            for q in ("50", "90", "99")
        }
        errors = sum(sum(r.wrk.errors.values()) for r in ours)
        lines.append(
            f"| {condition_label(c, settings)} | {len(ours)}"
            f" | {median(rounds, c, lambda r: r.wrk.rps):.0f}"
            f" | {lat['50']:.1f} ms | {lat['90']:.1f} ms | {lat['99']:.1f} ms"
            f" | {errors:,} |"
        )
    return lines


def verdict(rounds: list[Round], settings: Settings) -> str:
    value, pairs = ratio(rounds), pair_ratios(rounds)
    met = "met" if value >= TARGET else "not met"
    return (
        f"With {settings.streams:,} streams open, the product page keeps"
        f" **{percent(value)}** of its requests per second (median with / median"
        f" without; per round {percent(statistics.median(pairs))}, from"
        f" {percent(min(pairs))} to {percent(max(pairs))}). Target >="
        f" {TARGET * 100:.0f} %: **{met}**."
    )


def rounds_table(rounds: list[Round]) -> list[str]:
    lines = [
        "| Round | Condition | req/s | p50 / p99 | wrk errors"
        " | Connections: clients→nginx / nginx→stream pool / stream worker"
        " / nginx→web pool | CPU (cores): nginx / web pool / stream pool"
        " / wrk / stream client + publisher"
        " | Machine busy (cores) | CPU outside the benchmark"
        " | Workers booted during the run |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        c, cpu = r.connections, r.cpu
        lines.append(
            f"| {r.number} | {r.condition} | {r.wrk.rps:.0f}"
            f" | {r.wrk.latency_ms['50']:.1f} / {r.wrk.latency_ms['99']:.1f} ms"
            f" | {counts(r.wrk.errors)}"
            f" | {c['clients-nginx']:,} / {c['nginx-stream']:,}"
            f" / {c['stream-worker']:,} / {c['nginx-web']:,}"
            f" | {cpu['nginx']:.2f} / {cpu['web']:.2f} / {cpu['stream']:.2f}"
            f" / {cpu['wrk']:.2f} / {cpu['load']:.2f}"
            f" | {cpu['machine']:.2f} | {percent(cpu['outside'])} of a core"
            f" | {r.booted} |"
        )
    return lines


def delivery_table(rounds: list[Round], settings: Settings) -> list[str]:
    lines = [
        "| Round | Connected | Ramp | Failed to connect | Events published"
        f" | Delivered within {settings.window:g} s | Received at all"
        " | p50 | p90 | p99 | max | Dropped while publishing | Publish errors |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rounds:
        d = r.delivery
        if d is None:
            continue
        lat = d.latency
        lines.append(
            f"| {r.number} | {d.connected:,} | {d.ramp_seconds:.1f} s"
            f" | {counts(d.failures)} | {d.published} | **{percent(d.share)}**"
            f" | {percent(d.received_share)} | {ms(lat.get('p50'))}"
            f" | {ms(lat.get('p90'))} | {ms(lat.get('p99'))} | {ms(lat.get('max'))}"
            f" | {counts(d.dropped)} | {counts(d.publish_errors)} |"
        )
    return lines


def software() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(
                f"{name} {metadata.version(name)}".replace("redis ", "redis-py ")
            )
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    parts.append(nginx.strip().replace("nginx version: nginx/", "nginx "))
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    parts.append(f"wrk {(wrk.split() or ['?', '?'])[1]}")
    parts.append(flask_patterns_version())
    return ", ".join(parts)


def servers(settings: Settings) -> str:
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    try:
        found = [f"Redis {client.info('server')['redis_version']}"]
    finally:
        client.close()
    with admin_connection(settings.database_url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        found.append(f"PostgreSQL {row[0] if row else '?'}")
    return ", ".join(found)


def method(settings: Settings) -> list[str]:
    redis_db = urllib.parse.urlsplit(settings.redis_url).path.lstrip("/")
    return [
        "- Topology: `deploy/up.py` on free ports of 127.0.0.1, with the"
        " deployment's own nginx and gunicorn configs and their defaults, except"
        " `STREAM_WORKERS=1` (pools above); a fresh PostgreSQL database"
        " (`storefront_bench_<hex>`: schema, demo data; dropped at the end) and"
        f" Redis database {redis_db} (flushed before and after). Everything,"
        " the load included, shares the machine's CPUs.",
        f"- Load: `wrk -t1 -c{settings.connections} -d{settings.duration}s"
        f" --latency http://LISTEN{PAGE}` through nginx to the web pool, after a"
        " 3 s warm-up. Any non-2xx answer or socket error is counted and shown.",
        f"- Rounds: {settings.rounds} of each condition, alternating, *without*"
        f" first. *With*: `bench/sse_client.py` (one process, one epoll loop)"
        f" opens {settings.streams:,} `GET {STREAM_PATH}` through nginx, in"
        f" batches of {settings.batch}, each stream counting once its first"
        " frame arrived; the round waits until nginx and the stream worker hold"
        " that many connections, then a publisher process sends one event a"
        f' second, `RedisBroker(url).publish("{CHANNEL}", {{"t", "seq",'
        f' "text"}})`, and wrk starts {settings.settle:g} s later. After wrk the'
        f" publisher stops, the client reads {settings.window + 1:g} s more and"
        " closes every stream. *Without*: no stream and no publisher; the round"
        " first waits until nginx and the stream worker hold no stream.",
        "- Figures: medians of the rounds; the ratio is the median with streams"
        " over the median without, the per-round ratios pair each *with* round"
        " with the *without* round just before it.",
        "- Delivery: the client's receive time minus the event's `t` for every"
        f" (event, stream) pair; *delivered within {settings.window:g} s* and"
        " *received at all* (by the time the client stops) are over events"
        " published times streams requested.",
        "- Workers booted: gunicorn's `Booting worker` lines during the wrk run;"
        " a web worker recycled after `WEB_MAX_REQUESTS` (10,000 by default,"
        " with jitter) is replaced by a new one.",
        "- Connections: established TCP sockets of nginx's workers and the"
        " stream worker (`/proc/<pid>/fd` + `/proc/net/tcp`), counted halfway"
        " through each wrk run.",
        "- CPU: user + system time of nginx, of each pool (master, workers and"
        " the workers it reaped), of wrk and of the stream client and the"
        " publisher (which run on the same cores in the *with* rounds) over"
        " the wrk run, in cores; *machine busy* is"
        " the busy time of all the machine's CPUs (`/proc/stat`), in cores"
        " too. *CPU outside the"
        " benchmark* is the machine's busy time (`/proc/stat`) minus that of"
        " every process of the benchmark (this script and all it started, the"
        " Redis server, the PostgreSQL backends of the database and the"
        " server's background processes, each from its own `/proc/<pid>/stat`):"
        " other users of the machine. A PostgreSQL backend that exits during a"
        " run (when its web worker is recycled after `max_requests`) is left"
        " out, so its last seconds count as outside.",
    ]


def logs_lines(logs: dict[str, dict[str, int]]) -> list[str]:
    return [
        "- nginx error log (warn and above) while starting, before the"
        f" rounds: {counts(logs['nginx at start'])}",
        f"- nginx error log during the rounds: {counts(logs['nginx'])}",
        f"- Errors in the pools' and the worker's output: {counts(logs['app'])}",
    ]


def section(
    rounds: list[Round], settings: Settings, logs: dict[str, dict[str, int]]
) -> str:
    now = run_time()
    end_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        SECTION.start,
        "## Topology: the product page through nginx, with"
        f" {settings.streams:,} open streams",
        "",
        f"- Date: {now}",
        f"- Machine: {settings.machine}, {end_load} at the end,"
        f" `ulimit -n` {os.sysconf('SC_OPEN_MAX')}",
        f"- Software: {settings.software}",
        "- Pools: " + ", ".join(f"{k} {cell(v)}" for k, v in settings.pools.items()),
        "- Command: `make bench-topology`"
        f" (`python -m bench.topology{settings.arguments}`)",
        "",
        "Method:",
        "",
        *method(settings),
        "",
        *summary_table(rounds, settings),
        "",
        verdict(rounds, settings),
        "",
        "Round by round:",
        "",
        *rounds_table(rounds),
        "",
        "Event delivery to the streams during the *with* rounds:",
        "",
        *delivery_table(rounds, settings),
        "",
        "Logs:",
        "",
        *logs_lines(logs),
        SECTION.end,
    ]
    return "\n".join(parts) + "\n"


# Command line.


def parse_args(argv: list[str]) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--streams", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--redis-db", type=int, default=10)
    add_report_options(parser)
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds,
        duration=args.duration,
        connections=args.connections,
        streams=args.streams,
        batch=args.batch,
        settle=args.settle,
        window=args.window,
        redis_url=redis_database_url(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"), args.redis_db
        ),
        database_url=database_url(
            os.environ.get("STOREFRONT_DATABASE_URL", "postgresql://127.0.0.1/x")
        ),
        arguments=echoed_arguments(argv),
    )
    return settings, report_path(args)


def run(settings: Settings) -> tuple[list[Round], dict[str, dict[str, int]]]:
    with tempfile.TemporaryDirectory(prefix="bench-topology-") as name:
        run_dir = Path(name)
        run_dir.chmod(0o755)  # nginx's workers may run as another user
        with topology(settings, run_dir) as top:
            check_page(top)
            settings.pools = pools(top)
            start_log = len(nginx_log(run_dir))
            rounds = measure(top, settings)
        text = nginx_log(run_dir)
        logs = {
            "nginx at start": nginx_errors(text[:start_log]),
            "nginx": nginx_errors(text[start_log:]),
            "app": app_errors(run_dir),
        }
    return rounds, logs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["publish"]:
        return publish_main(argv[1:])
    settings, report = parse_args(argv)
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(f"Needs {' and '.join(missing)}: apt-get install -y {' '.join(missing)}")
        return 1
    settings.machine = machine()
    settings.software = f"{software()}, {servers(settings)}"
    rounds, logs = run(settings)
    print("\n" + "\n".join(rounds_table(rounds)))
    print("\n" + "\n".join(summary_table(rounds, settings)))
    print("\n" + verdict(rounds, settings))
    print("\n" + "\n".join(logs_lines(logs)))
    if report is not None:
        SECTION.write(report, section(rounds, settings, logs))
        print(f"\nWrote {report.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
