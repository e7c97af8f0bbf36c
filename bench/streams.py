"""Publish-to-delivery latency, CPU per delivery, memory and Redis connections
of event streams served by ONE gunicorn gevent worker, flask-patterns against
Flask-SSE and against a bare fan-out that bounds them both.

Each run starts one plain gunicorn gevent worker process (``-k gevent -w 1
--worker-connections 16000``, on a free port of 127.0.0.1) serving one channel
of server-sent events through Redis, opens N streams from one client process
(``bench.sse_client``), then publishes an event every 0.5 s from a separate
process (``python -m bench.sse_apps``) whose JSON data carries the publish time.
The client computes receive time - publish time for every event on every stream.

*flask-patterns* is ``EventStreams(app, broker=RedisBroker(url, prefix=...))``
and a view returning ``streams.response("activity")``: one Redis subscriber
connection per process, fanned out to the streams in memory, a first frame at
once and a heartbeat comment every 15 s. *Flask-SSE* 1.0, installed unmodified in a
virtualenv of its own with the same Flask, redis-py, gevent and gunicorn, opens
one Redis pub/sub connection per stream and is published to with
``sse.publish()`` inside an app context.

Why: a stream worker is worth having only if one process holds many idle
streams cheaply and still delivers every event promptly, without eating Redis'
client slots, and a server is only as cheap as what it does per delivery. The
*bare fan-out* (``bench.bare_fanout``: ``selectors`` and non-blocking sockets,
no Flask, no gevent) writes the same frames to as many streams: its deliveries
per CPU-second are the ceiling every row is measured against. The targets, for
flask-patterns: every event delivered to every stream, p99 latency <= 80 ms at
10,000 streams and <= 200 ms at 15,000 in one worker, <= 12 KiB of worker
resident memory per idle stream (VmRSS after the streams opened minus before,
over N), <= 2 Redis connections from the worker, whatever N, and >= 0.6 of the
ceiling's deliveries per CPU-second.

Run it with ``make bench-streams`` (or ``make bench``); it prints a table and
rewrites its own section of ``BENCHMARKS.md``. By default it measures the bare
fan-out and flask-patterns at 1,000, 10,000 and 15,000 streams and Flask-SSE at
1,000 and 10,000 (Redis' default 10,000 clients leave it no more), and
flask-patterns with streams kept in their requests at 10,000, about ten minutes
in all; ``--ceiling N ...``, ``--patterns N ...``, ``--attached N ...`` and
``--flask-sse N ...`` choose other numbers (none to leave one out),
``--profile DIR`` records the worker with py-spy while it publishes.
Flask-SSE's virtualenv is ``/tmp/flask-sse-venv`` (the Makefile creates it) or
``--flask-sse-python``. It uses Redis database 14 of the server in
``REDIS_URL`` (default ``redis://127.0.0.1:6379``) and flushes it before each
run. Every run is bounded in time and sends traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path

import redis

from bench.jsonlines import JsonLines
from bench.procfs import alive
from bench.procfs import busy_seconds
from bench.procfs import children
from bench.procfs import cpu_seconds
from bench.procfs import established
from bench.procfs import rss_kib
from bench.procfs import socket_inodes
from bench.procfs import this_process_cpu
from bench.report import add_report_options
from bench.report import free_port
from bench.report import machine
from bench.report import report_path
from bench.report import run_time
from bench.report import Section

ROOT = Path(__file__).resolve().parent.parent
SECTION = Section("streams")
DEFAULT_FLASK_SSE_PYTHON = "/tmp/flask-sse-venv/bin/python"
WORKER_CONNECTIONS = 16_000
TARGET_STREAMS = 10_000
#: p99 latency targets by the most streams they apply to.
TARGET_P99 = ((10_000, 0.080), (15_000, 0.200))
TARGET_KIB = 12.0
TARGET_REDIS = 2
#: Deliveries per worker CPU-second, as a share of the ceiling's.
TARGET_SHARE = 0.6
VERSIONS = ("Flask", "Werkzeug", "gevent", "greenlet", "gunicorn", "redis")


@dataclass(frozen=True)
class Implementation:
    name: str
    app: str
    path: str
    # "opened": connected once the first SSE block arrived; "written": once the
    # request is written (the server sends nothing before the first event).
    mode: str
    #: "gunicorn" serves ``app``; "bare" is ``bench.bare_fanout``.
    server: str = "gunicorn"
    #: Whose ``bench.sse_apps`` publisher sends the events.
    publisher: str = ""
    #: Extra environment of the server.
    env: tuple[tuple[str, str], ...] = ()


IMPLEMENTATIONS = {
    "flask-patterns": Implementation(
        "flask-patterns", "bench.sse_apps:patterns_app()", "/streams/activity", "opened"
    ),
    "attached": Implementation(
        "flask-patterns, not detached",
        "bench.sse_apps:patterns_app()",
        "/streams/activity",
        "opened",
        publisher="flask-patterns",
        env=(("BENCH_STREAMS_DETACH", "0"),),
    ),
    "metrics": Implementation(
        "flask-patterns, metrics on",
        "bench.sse_apps:patterns_app()",
        "/streams/activity",
        "opened",
        publisher="flask-patterns",
        env=(("BENCH_STREAMS_METRICS", "1"),),
    ),
    "flask-sse": Implementation(
        "Flask-SSE 1.0",
        "bench.sse_apps:flask_sse_app()",
        "/stream?channel=activity",
        "written",
    ),
    "ceiling": Implementation(
        "bare fan-out",
        "",
        "/streams/activity",
        "opened",
        server="bare",
        publisher="flask-patterns",
    ),
}


def publisher_of(name: str) -> str:
    return IMPLEMENTATIONS[name].publisher or name


@dataclass
class Settings:
    runs: list[tuple[str, int]]
    events: int
    interval: float
    window: float
    batch: int
    batch_timeout: float
    heartbeat: float
    redis_url: str
    pythons: dict[str, str]
    profile: Path | None
    py_spy: str | None
    machine: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One implementation serving N streams."""

    implementation: str
    streams: int
    connected: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    ramp_seconds: float = math.nan
    subscribed: int = 0
    published: int = 0
    publish_errors: dict[str, int] = field(default_factory=dict)
    in_window: int = 0
    received: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    rss_before_kib: int = 0
    rss_idle_kib: int = 0
    redis_peak: int = 0
    redis_clients_peak: int = 0
    redis_rejected: int = 0
    worker_cpu: float = math.nan
    worker_cpu_seconds: float = math.nan
    other_cpu: float = math.nan
    client_cpu: float = math.nan
    dropped: dict[str, int] = field(default_factory=dict)
    events_per_stream: dict[str, int] = field(default_factory=dict)
    missed: dict[int, int] = field(default_factory=dict)
    published_seqs: list[int] = field(default_factory=list)
    log_errors: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def label(self) -> str:
        return IMPLEMENTATIONS[self.implementation].name

    @property
    def delivery(self) -> float:
        """Share of the (event, stream) pairs, over every stream requested,
        delivered within the window."""
        expected = self.published * self.streams
        return self.in_window / expected if expected else 0.0

    @property
    def open_streams(self) -> int:
        """Streams connected and subscribed when publishing began."""
        return min(self.connected, self.subscribed)

    @property
    def kib_per_stream(self) -> float:
        if not self.connected:
            return math.nan
        return (self.rss_idle_kib - self.rss_before_kib) / self.connected

    @property
    def per_cpu_second(self) -> float:
        """(Event, stream) pairs delivered per second of the worker's CPU."""
        if not self.worker_cpu_seconds > 0:
            return math.nan
        return self.received / self.worker_cpu_seconds

    @property
    def target_p99(self) -> float:
        for most, p99 in TARGET_P99:
            if self.streams <= most:
                return p99
        return TARGET_P99[-1][1]

    def targets(self, share: float) -> dict[str, bool]:
        """``share``: deliveries per CPU-second over the ceiling's."""
        return {
            "all streams connected": self.open_streams == self.streams,
            "every event to every stream": self.published > 0 and self.delivery == 1.0,
            "p99 <= 80 ms (to 10,000 streams), 200 ms (15,000)": self.latency.get(
                "p99", math.inf
            )
            <= self.target_p99,
            "<= 12 KiB per idle stream": self.kib_per_stream <= TARGET_KIB,
            "<= 2 Redis connections": self.redis_peak <= TARGET_REDIS,
            ">= 0.6 of the ceiling's deliveries per CPU-second": share >= TARGET_SHARE,
        }


# Processes.


def server_command(
    python: str, impl: Implementation, port: int, log: Path, settings: Settings
) -> list[str]:
    if impl.server == "bare":
        return [
            python,
            "-m",
            "bench.bare_fanout",
            f"--port={port}",
            f"--redis-url={settings.redis_url}",
            f"--notify-key={notify_key(settings)}",
        ]
    return gunicorn_command(python, impl.app, port, log)


def notify_key(settings: Settings) -> str:
    from bench.sse_apps import PREFIX
    from flask_patterns.streams import RedisBroker

    return RedisBroker(settings.redis_url, prefix=PREFIX).notify_key


def gunicorn_command(python: str, app: str, port: int, log: Path) -> list[str]:
    command = [
        python,
        "-m",
        "gunicorn",
        # Plain gunicorn, no config file: what a user gets from the README.
        "-k",
        "gevent",
        "-w",
        "1",
        "--worker-connections",
        str(WORKER_CONNECTIONS),
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
        "--error-logfile",
        str(log),
        "--log-level",
        "warning",
    ]
    help_text = subprocess.run(
        [python, "-m", "gunicorn", "--help"], capture_output=True, text=True, check=True
    ).stdout
    if "--no-control-socket" in help_text:
        command.append("--no-control-socket")
    return [*command, app]


def wait_until_serving(port: int, master: subprocess.Popen[bytes], bare: bool) -> int:
    """Wait for the worker to answer ``GET /health``; return its pid."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f"the server exited with status {master.returncode}")
        workers = [master.pid] if bare else children(master.pid)
        if workers and health(port):
            return workers[0]
        time.sleep(0.2)
    raise RuntimeError("the gunicorn worker did not start within 30 s")


def health(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@contextlib.contextmanager
def serving(
    name: str, settings: Settings, env: dict[str, str], log: Path
) -> t.Iterator[tuple[int, int]]:
    """Start one gevent worker (or the bare fan-out); yield its port and pid;
    stop it at once."""
    impl = IMPLEMENTATIONS[name]
    port = free_port()
    python = settings.pythons[publisher_of(name)]
    command = server_command(python, impl, port, log, settings)
    with running(command, port, env, log, bare=impl.server == "bare") as worker:
        yield port, worker


@contextlib.contextmanager
def gunicorn(
    python: str, app: str, env: dict[str, str], log: Path
) -> t.Iterator[tuple[int, int]]:
    """Start one gevent worker of the stream pool's settings serving ``app``
    (``bench.reconnect_storm``); yield its port and pid; stop it at once."""
    port = free_port()
    command = gunicorn_command(python, app, port, log)
    with running(command, port, env, log, bare=False) as worker:
        yield port, worker


@contextlib.contextmanager
def running(
    command: list[str], port: int, env: dict[str, str], log: Path, *, bare: bool
) -> t.Iterator[int]:
    """Run ``command`` until it serves on ``port``; yield the worker's pid."""
    # The app's own log records (the library's warnings) go to stderr.
    with stderr_log(log).open("wb") as output:
        master = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    worker = 0
    try:
        worker = wait_until_serving(port, master, bare)
        yield worker
    finally:
        stop_gunicorn(master, worker)


def stderr_log(log: Path) -> Path:
    return log.with_suffix(".stderr")


def stop_gunicorn(master: subprocess.Popen[bytes], worker: int) -> None:
    """SIGQUIT is gunicorn's quick shutdown (SIGTERM the bare fan-out's);
    SIGKILL the processes started here if they do not go within 10 s."""
    if master.poll() is None:
        master.send_signal(signal.SIGTERM if master.pid == worker else signal.SIGQUIT)
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
    deadline = time.monotonic() + 5
    while worker and alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    if worker and alive(worker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def load_client(port: int, impl: Implementation, n: int, s: Settings) -> JsonLines:
    """The ``bench.sse_client`` process."""
    timeout = s.events * s.interval + s.window + 600
    return JsonLines(
        "load client",
        [
            sys.executable,
            "-m",
            "bench.sse_client",
            f"--port={port}",
            f"--path={impl.path}",
            f"--streams={n}",
            f"--mode={impl.mode}",
            f"--batch={s.batch}",
            f"--batch-timeout={s.batch_timeout}",
            f"--window={s.window}",
            f"--max-seconds={timeout}",
        ],
    )


# Measuring the worker.


@dataclass
class CpuMeter:
    """CPU time of the worker, and of the processes outside this benchmark
    (everything but the worker, the load client, the publisher, Redis and this
    process)."""

    worker: int
    benchmark: list[int]
    start: dict[str, float] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        ours = this_process_cpu()
        for pid in self.benchmark:
            with contextlib.suppress(OSError):
                ours += cpu_seconds(pid)
        return {
            "wall": time.monotonic(),
            "machine": busy_seconds(),
            "worker": cpu_seconds(self.worker),
            "ours": ours,
        }

    def begin(self) -> None:
        self.start = self.read()

    def end(self) -> tuple[float, float, float]:
        """The worker's and the other processes' CPU, in cores, and the
        worker's in seconds."""
        now = self.read()
        delta = {k: now[k] - self.start[k] for k in now}
        others = delta["machine"] - delta["worker"] - delta["ours"]
        worker = delta["worker"]
        return worker / delta["wall"], max(0.0, others) / delta["wall"], worker


def ports_to(pid: int, port: int) -> set[int]:
    """Local ports of the process' established TCP connections to ``port``."""
    inodes = socket_inodes([pid])
    return {
        local
        for inode, (local, remote) in established(pid).items()
        if remote == port and inode in inodes
    }


def redis_connections(pid: int, client: redis.Redis, port: int) -> int:
    """The worker's connections to Redis that Redis lists in ``CLIENT LIST``."""
    ports = ports_to(pid, port)
    try:
        listed = {int(c["addr"].rsplit(":", 1)[1]) for c in client.client_list()}
    except redis.RedisError:
        return len(ports)
    return len(ports & listed)


def redis_info(client: redis.Redis) -> dict[str, int]:
    info = client.info()
    return {
        "clients": int(info["connected_clients"]),
        "rejected": int(info["rejected_connections"]),
    }


def wait_for_subscribers(client: redis.Redis, channel: str, expected: int) -> int:
    """Wait until ``expected`` connections subscribe to ``channel``, or until
    the count stops rising for 3 s (60 s at most)."""
    deadline = time.monotonic() + 60
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = int(client.pubsub_numsub(channel)[0][1])
        if count >= expected:
            return count
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > 3:
            return count
        time.sleep(0.5)
    return last


LOGGED_PROBLEM = re.compile(
    r"^[\w.]+(Error|Exception|Exit): |\[(ERROR|CRITICAL)\]|^Event subscriber|^Redis "
)


def log_errors(log: Path) -> dict[str, int]:
    """The exceptions, errors and library warnings the worker logged."""
    found: Counter[str] = Counter()
    for path in (log, stderr_log(log)):
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if LOGGED_PROBLEM.search(line):
                    found[line[:160]] += 1
    return dict(found.most_common(5))


# One run.


def server_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_STREAMS_REDIS_URL": settings.redis_url,
        "BENCH_STREAMS_HEARTBEAT": str(settings.heartbeat),
        "STREAM_ACCESS_LOG": "",
    }


def publish(
    name: str, settings: Settings, env: dict[str, str], sample: t.Callable[[], None]
) -> dict[str, t.Any]:
    """Run the publisher process, calling ``sample`` every few seconds (not
    more often: reading 10,000 sockets' worth of ``/proc`` costs CPU too)."""
    process = subprocess.Popen(
        [
            settings.pythons[publisher_of(name)],
            "-m",
            "bench.sse_apps",
            publisher_of(name),
            f"--events={settings.events}",
            f"--interval={settings.interval}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + settings.events * settings.interval + 60
    while time.monotonic() < deadline:
        try:
            process.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            sample()
    if process.poll() is None:
        process.kill()
    output, _ = process.communicate()
    return t.cast(dict[str, t.Any], json.loads(output or "{}"))


def profile(
    worker: int, name: str, n: int, settings: Settings
) -> subprocess.Popen[bytes] | None:
    """Record the worker's stacks while it publishes (``--profile``)."""
    if settings.profile is None or settings.py_spy is None:
        return None
    settings.profile.mkdir(parents=True, exist_ok=True)
    output = settings.profile / f"{name}-{n}.txt"
    seconds = math.ceil(settings.events * settings.interval) + 2
    return subprocess.Popen(
        [
            settings.py_spy,
            "record",
            f"--pid={worker}",
            f"--duration={seconds}",
            "--rate=100",
            "--format=raw",
            f"--output={output}",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(
    run: Run, client: redis.Redis, settings: Settings, log: Path, redis_port: int
) -> None:
    impl = IMPLEMENTATIONS[run.implementation]
    env = {**server_env(settings), **dict(impl.env)}
    with serving(run.implementation, settings, env, log) as (port, worker):
        before = redis_info(client)
        run.rss_before_kib = rss_kib(worker)
        load = load_client(port, impl, run.streams, settings)
        try:
            open_streams(run, load, client, settings)
            time.sleep(2)
            run.rss_idle_kib = rss_kib(worker)
            run.redis_peak = redis_connections(worker, client, redis_port)
            publish_and_drain(run, load, client, settings, worker, redis_port)
            run.redis_rejected = redis_info(client)["rejected"] - before["rejected"]
            if not alive(worker):
                run.error = "the worker process died during the run"
        finally:
            load.close()


def open_streams(
    run: Run, load: JsonLines, client: redis.Redis, settings: Settings
) -> None:
    batches = math.ceil(run.streams / settings.batch)
    ready = load.read(timeout=batches * settings.batch_timeout + 30)
    run.connected = int(ready["connected"])
    run.failures = ready["failures"]
    run.ramp_seconds = float(ready["ramp_seconds"])
    run.client_cpu = -float(ready["cpu_seconds"])
    if run.implementation == "flask-sse":
        run.subscribed = wait_for_subscribers(client, "activity", run.connected)
    else:
        run.subscribed = run.connected


def publish_and_drain(
    run: Run,
    load: JsonLines,
    client: redis.Redis,
    settings: Settings,
    worker: int,
    redis_port: int,
) -> None:
    def sample() -> None:
        with contextlib.suppress(OSError, redis.RedisError):
            run.redis_peak = max(
                run.redis_peak, redis_connections(worker, client, redis_port)
            )
            run.redis_clients_peak = max(
                run.redis_clients_peak, redis_info(client)["clients"]
            )

    server = int(client.info("server")["process_id"])
    meter = CpuMeter(worker, [load.process.pid, server])
    meter.begin()
    profiler = profile(worker, run.implementation, run.streams, settings)
    result = publish(run.implementation, settings, server_env(settings), sample)
    time.sleep(settings.window + 1)
    run.worker_cpu, run.other_cpu, run.worker_cpu_seconds = meter.end()
    if profiler is not None:
        profiler.wait(timeout=30)
    run.published_seqs = result.get("published", [])
    run.published = len(run.published_seqs)
    run.publish_errors = result.get("errors", {})
    record_deliveries(run, load.stop(timeout=120))


def record_deliveries(run: Run, done: dict[str, t.Any]) -> None:
    run.in_window = sum(done["within_window"].values())
    run.received = sum(done["received"].values())
    run.latency = {k: float(done[k]) for k in ("p50", "p90", "p99", "max")}
    firsts = sorted(values[0] for values in done["per_event"].values())
    medians = sorted(values[1] for values in done["per_event"].values())
    run.latency["first"] = firsts[len(firsts) // 2] if firsts else math.nan
    run.latency["event_p50"] = medians[len(medians) // 2] if medians else math.nan
    run.latency["worst_event_p50"] = medians[-1] if medians else math.nan
    run.client_cpu += float(done["cpu_seconds"])
    run.dropped = done["dropped"]
    if done["duplicates"]:
        run.dropped["duplicate events"] = int(done["duplicates"])
    run.events_per_stream = done["events_per_stream"]
    if done["bad_data"]:
        run.dropped["events without our t and seq"] = int(done["bad_data"])
    received = {int(seq): n for seq, n in done["received"].items()}
    for seq in run.published_seqs:
        if received.get(seq, 0) < run.connected:
            run.missed[seq] = run.connected - received.get(seq, 0)


def bench_one(name: str, n: int, settings: Settings, client: redis.Redis) -> Run:
    run = Run(name, n)
    redis_port = client.connection_pool.connection_kwargs.get("port", 6379)
    client.flushdb()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as directory:
        log = Path(directory) / "gunicorn.log"
        try:
            measure(run, client, settings, log, int(redis_port))
        except (RuntimeError, OSError, ValueError, KeyError, redis.RedisError) as error:
            run.error = f"{type(error).__name__}: {error}"
        run.log_errors = log_errors(log)
    client.flushdb()
    return run


def progress(run: Run) -> str:
    if run.error and not run.published:
        return f"  {run.label:<15} {run.streams:>6}  failed: {run.error}"
    lat = run.latency
    return (
        f"  {run.label:<15} {run.streams:>6} streams: {run.connected} connected,"
        f" {run.published} events, {percent(run.delivery)} delivered within"
        f" the window, p50 {ms(lat.get('p50'))} p99 {ms(lat.get('p99'))},"
        f" {run.kib_per_stream:.1f} KiB/stream, {run.redis_peak} Redis connections,"
        f" worker CPU {percent(run.worker_cpu)}, client CPU {run.client_cpu:.1f} s,"
        f" other processes {percent(run.other_cpu)}"
    )


# The report.


def percent(value: float) -> str:
    """One decimal, more if needed not to round up to 100 % or down to 0 %."""
    for decimals in range(1, 5):
        text = f"{value * 100:.{decimals}f}"
        rounded_up = value < 1 and float(text) >= 100
        rounded_down = value > 0 and float(text) == 0
        if not (rounded_up or rounded_down):
            break
    return f"{text} %"


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms"


def yes(value: bool) -> str:
    return "yes" if value else "**no**"


def results_table(runs: list[Run], window: float) -> list[str]:
    lines = [
        "| Implementation | Streams | Connected | Events published"
        f" | Delivered within {window:g} s | p50 | p90 | p99 | max"
        " | Worker RSS per idle stream | Redis connections from the worker"
        " | Worker CPU while publishing |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lat = r.latency
        lines.append(
            f"| {r.label} | {r.streams:,} | {r.open_streams:,} | {r.published}"
            f" | **{percent(r.delivery)}** | {ms(lat.get('p50'))}"
            f" | {ms(lat.get('p90'))} | **{ms(lat.get('p99'))}**"
            f" | {ms(lat.get('max'))} | {r.kib_per_stream:.1f} KiB"
            f" | {r.redis_peak:,} | {percent(r.worker_cpu)} |"
        )
    return lines


def same_streams(runs: list[Run], name: str, streams: int) -> Run | None:
    return next(
        (r for r in runs if r.implementation == name and r.streams == streams), None
    )


def ratio(run: Run, runs: list[Run], name: str) -> float:
    """The run's deliveries per CPU-second over those of ``name`` serving as
    many streams in the same benchmark; NaN if it did not."""
    other = same_streams(runs, name, run.streams)
    if other is None or not other.per_cpu_second > 0:
        return math.nan
    return run.per_cpu_second / other.per_cpu_second


def times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def cost_table(runs: list[Run]) -> list[str]:
    lines = [
        "| Implementation | Streams | Deliveries | Worker CPU | Deliveries per"
        " CPU-second | CPU per delivery | Share of the ceiling | Over Flask-SSE"
        " | p99 over the ceiling's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        per = r.per_cpu_second
        micros = 1e6 / per if per > 0 else math.nan
        ceiling = same_streams(runs, "ceiling", r.streams)
        p99 = r.latency.get("p99", math.nan)
        base = ceiling.latency.get("p99", math.nan) if ceiling else math.nan
        lines.append(
            f"| {r.label} | {r.streams:,} | {r.received:,}"
            f" | {r.worker_cpu_seconds:.2f} s | **{per:,.0f}** | {micros:.1f} µs"
            f" | **{times(ratio(r, runs, 'ceiling'))}**"
            f" | {times(ratio(r, runs, 'flask-sse'))} | {times(p99 / base)} |"
        )
    return lines


def targets_table(runs: list[Run]) -> list[str]:
    names = list(runs[0].targets(math.nan))
    lines = [
        "| Implementation | Streams | " + " | ".join(names) + " |",
        "|---|---:|" + "---|" * len(names),
    ]
    for r in runs:
        targets = r.targets(ratio(r, runs, "ceiling"))
        cells = " | ".join(yes(ok) for ok in targets.values())
        lines.append(f"| {r.label} | {r.streams:,} | {cells} |")
    return lines


def connections_table(runs: list[Run]) -> list[str]:
    lines = [
        "| Implementation | Streams | Ramp | Failed to connect"
        " | Subscribed before publishing | Redis clients on the server (peak)"
        " | Redis rejected connections | Worker log |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.label} | {r.streams:,} | {r.ramp_seconds:.1f} s"
            f" | {counts(r.failures)} | {r.subscribed:,}"
            f" | {r.redis_clients_peak:,} | {r.redis_rejected:,}"
            f" | {counts(r.log_errors)}{'; ' + r.error if r.error else ''} |"
        )
    return lines


def delivery_table(runs: list[Run]) -> list[str]:
    lines = [
        "| Implementation | Streams | Received at all | Streams by events received"
        " | Events missed by connected streams | Dropped while publishing"
        " | First stream served (median over events)"
        " | Per-event p50: median over events (slowest event)"
        " | Load client CPU while publishing"
        " | CPU of processes outside the benchmark while publishing"
        " | Publish errors |",
        "|---|---:|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        expected = r.published * r.streams
        received = percent(r.received / expected) if expected else "n/a"
        lines.append(
            f"| {r.label} | {r.streams:,} | {received}"
            f" | {by_events(r.events_per_stream)} | {missed(r)}"
            f" | {counts(r.dropped)} | {ms(r.latency.get('first'))}"
            f" | {ms(r.latency.get('event_p50'))}"
            f" ({ms(r.latency.get('worst_event_p50'))})"
            f" | {r.client_cpu:.1f} s | {percent(r.other_cpu)} of a core"
            f" | {counts(r.publish_errors)} |"
        )
    return lines


def by_events(values: dict[str, int]) -> str:
    """``streams x events`` for each number of events, most events first."""
    ordered = sorted(values.items(), key=lambda item: -int(item[0]))
    return ", ".join(f"{n:,} x {events}" for events, n in ordered) or "none"


def missed(run: Run) -> str:
    """The events that some connected streams did not receive at all, runs of
    consecutive events missed by as many streams written as one range."""
    groups: list[list[int]] = []
    for seq, n in sorted(run.missed.items()):
        if groups and groups[-1][1] == seq - 1 and groups[-1][2] == n:
            groups[-1][1] = seq
        else:
            groups.append([seq, seq, n])
    parts = [
        f"event {a}: {n:,} streams" if a == b else f"events {a}-{b}: {n:,} each"
        for a, b, n in groups
    ]
    return "; ".join(parts) or "none"


def counts(values: dict[str, int]) -> str:
    if not values:
        return "none"
    return "; ".join(f"{n:,} x {cell(k)}" for k, n in values.items())


def cell(text: str) -> str:
    return "`" + text.replace("|", "/").replace("`", "'") + "`"


def software(settings: Settings) -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{name} {metadata.version(name)}")
    parts.append(flask_patterns_version())
    parts = [p.replace("redis ", "redis-py ") for p in parts]
    python = settings.pythons.get("flask-sse")
    if python:
        parts.append(f"Flask-SSE venv: {venv_versions(python)}")
    return ", ".join(parts)


def flask_patterns_version() -> str:
    version = f"flask-patterns {metadata.version('flask-patterns')}"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/flask_patterns"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        version += f" ({commit}{', with local changes' if changed else ''})"
    return version


def venv_versions(python: str) -> str:
    script = (
        "import json, platform, importlib.metadata as m\n"
        f"names = {['Flask-SSE', *VERSIONS]!r}\n"
        "print(json.dumps([f'Python {platform.python_version()}']"
        " + [f'{n} {m.version(n)}' for n in names]))"
    )
    try:
        output = subprocess.run(
            [python, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not installed"
    return ", ".join(json.loads(output)).replace("redis ", "redis-py ")


def method(settings: Settings) -> list[str]:
    seconds = settings.events * settings.interval
    return [
        "- Server: one plain gunicorn process with ONE gevent worker (`-k gevent"
        f" -w 1 --worker-connections {WORKER_CONNECTIONS}`, no config file) on a"
        " free port of 127.0.0.1, `ulimit -n` as given above. *flask-patterns*:"
        " `EventStreams(app, broker=RedisBroker(url, prefix=...))` and `GET"
        ' /streams/activity` returning `streams.response("activity")`,'
        f" heartbeat {settings.heartbeat:g} s; the broker has a key prefix of"
        " its own, so that nothing else on the Redis server shares its keys or"
        " its notification channel. *flask-patterns, not detached*: the same"
        " app with `PATTERNS_STREAMS_DETACH = False`, so that each stream keeps"
        " its request's greenlet and every event goes through it and gunicorn's"
        " write, as before streams detached. *Flask-SSE*: Flask-SSE 1.0,"
        " unmodified, in a virtualenv of its own with the same Flask, redis-py,"
        " gevent and gunicorn; its blueprint at `/stream`, clients on"
        " `?channel=activity`. *bare fan-out*, the ceiling"
        " (`bench/bare_fanout.py`): one process with no Flask, no WSGI and no"
        " gevent, a `selectors` loop over non-blocking sockets that answers"
        " each stream with the same headers and opening frame, reads the"
        " flask-patterns broker's notifications from Redis and writes each"
        " event's frame, chunk-framed as gunicorn frames it, to every stream"
        " with one `send` each; it is published to like flask-patterns.",
        "- Load client (`bench/sse_client.py`): one process, one epoll loop over"
        " raw non-blocking sockets, a minimal HTTP/1.1 `GET`, a de-chunker and"
        " an SSE block parser. It opens the N streams in batches of"
        f" {settings.batch}, each batch waiting until all its streams are"
        " connected. A flask-patterns stream counts as connected once its"
        " first frame (`retry:` and a comment, sent at once) arrived; Flask-SSE"
        " sends nothing, not even headers, before the first event, so one of"
        " its streams counts once the connection is accepted and the request"
        " written, and the benchmark then waits until Redis' `PUBSUB NUMSUB`"
        " reaches the number connected (or stops rising for 3 s). *Connected*"
        " in the table is the smaller of the two counts.",
        f"- Publisher: a separate process sends {settings.events} events, one"
        f" every {settings.interval:g} s ({seconds:g} s), each with JSON data"
        ' `{"t": time.time(), "seq": n}`, `t` taken just before the publish'
        ' call: `RedisBroker(url).publish("activity", ...)` without a Flask'
        ' app, or Flask-SSE\'s `sse.publish(..., channel="activity")` inside an'
        " app context (which opens a new Redis connection per call).",
        "- Latency is the client's receive time minus `t`, for every (event,"
        " stream) pair; a read is stamped when epoll reports it, and parsed"
        " after the measurement. While measuring, the client reads in rounds:"
        " after draining what was ready it sleeps 1 ms, so that the worker's"
        " sends over loopback do not each pay for waking a client asleep in"
        " `epoll_wait` (17 % of the worker's CPU in a `perf` profile); this"
        " can add up to 1 ms to a latency, never remove any. p50/p90/p99/max"
        " are over all pairs received. *Delivered"
        f" within {settings.window:g} s* counts the pairs received within"
        f" {settings.window:g} s of publishing, over events published times streams"
        " requested, so streams that never connected count as missed. The"
        f" client keeps reading {settings.window + 1:g} s after the last event.",
        "- Memory: the worker's VmRSS (`/proc/<pid>/status`) after it answered"
        " one request and before any stream, and again 2 s after all streams"
        " are open and idle; the difference over the streams connected.",
        "- Redis connections from the worker: its established TCP sockets to"
        " the Redis port (`/proc/<pid>/fd` + `/proc/<pid>/net/tcp`) that"
        " `CLIENT LIST` shows, sampled when idle and every 3 s while"
        " publishing; the peak is shown. Redis database"
        f" {urllib.parse.urlsplit(settings.redis_url).path.lstrip('/')},"
        " flushed before each run.",
        "- Worker CPU: its user + system CPU time from the first publish to the"
        " end of the drain, over that wall-clock time (100 % = one core)."
        " *Deliveries per CPU-second* is the (event, stream) pairs received"
        " over that CPU time; *share of the ceiling* and *over Flask-SSE*"
        " divide it by the bare fan-out's and Flask-SSE's at the same number"
        " of streams in the same benchmark. On loopback the kernel charges"
        " the receiver's TCP work to the sender too, so a `send` costs more"
        " CPU here than to a remote client. The"
        " load client, Redis and the publisher run on the same machine. *CPU of"
        " processes outside the benchmark* is the machine's busy time"
        " (`/proc/stat`) over the same period minus that of the worker, the"
        " load client, the publisher, Redis and the driver: work of other"
        " users of the machine, which delays the worker when the two cores"
        " are taken.",
    ]


def verdict(runs: list[Run]) -> str:
    ours = [
        r
        for r in runs
        if r.implementation == "flask-patterns" and r.streams >= TARGET_STREAMS
    ]
    if not ours:
        return f"flask-patterns was not measured at {TARGET_STREAMS:,} streams or more."
    lines = []
    for run in ours:
        targets = run.targets(ratio(run, runs, "ceiling"))
        missed = [name for name, ok in targets.items() if not ok]
        state = "met" if not missed else "not met (" + "; ".join(missed) + ")"
        lines.append(
            f"Targets for flask-patterns at {run.streams:,} streams: **{state}**."
        )
    return "\n\n".join(lines)


def section(runs: list[Run], settings: Settings) -> str:
    now = run_time()
    limits = f"`ulimit -n` {os.sysconf('SC_OPEN_MAX')}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        SECTION.start,
        "## Event streams: flask-patterns vs. Flask-SSE 1.0 and a bare fan-out,"
        " one worker",
        "",
        f"- Date: {now}",
        f"- Machine: {settings.machine}, {load} at the end, {limits}",
        f"- Software: {software(settings)}, {settings.notes[0]}",
        "- Command: `make bench-streams` (`python -m bench.streams`)",
        *(f"- Note: {note}" for note in settings.notes[1:]),
        "",
        "Method:",
        "",
        *method(settings),
        "",
        *results_table(runs, settings.window),
        "",
        "CPU per delivery:",
        "",
        *cost_table(runs),
        "",
        verdict(runs),
        "",
        "Targets (flask-patterns' targets, applied to both):",
        "",
        *targets_table(runs),
        "",
        "Delivery details:",
        "",
        *delivery_table(runs),
        "",
        "Connections and limits:",
        "",
        *connections_table(runs),
        SECTION.end,
    ]
    return "\n".join(parts) + "\n"


# Command line.


def redis_database_url(base: str, database: int) -> str:
    parts = urllib.parse.urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"Redis must run on this machine, not at {host}.")
    return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ceiling", type=int, nargs="*", default=[1_000, 10_000, 15_000]
    )
    parser.add_argument(
        "--patterns", type=int, nargs="*", default=[1_000, 10_000, 15_000]
    )
    parser.add_argument("--attached", type=int, nargs="*", default=[10_000])
    parser.add_argument("--flask-sse", type=int, nargs="*", default=[1_000, 10_000])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batch-timeout", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=15.0)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument(
        "--flask-sse-python",
        default=os.environ.get("FLASK_SSE_PYTHON", DEFAULT_FLASK_SSE_PYTHON),
        help="the python of the virtualenv holding Flask-SSE",
    )
    parser.add_argument("--profile", type=Path, help="py-spy stacks go here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"))
    add_report_options(parser)
    args = parser.parse_args(argv)
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    settings = Settings(
        runs=[("ceiling", n) for n in args.ceiling]
        + [("flask-patterns", n) for n in args.patterns]
        + [("attached", n) for n in args.attached]
        + [("flask-sse", n) for n in args.flask_sse],
        events=args.events,
        interval=args.interval,
        window=args.window,
        batch=args.batch,
        batch_timeout=args.batch_timeout,
        heartbeat=args.heartbeat,
        redis_url=redis_database_url(base, args.redis_db),
        pythons={"flask-patterns": sys.executable, "flask-sse": args.flask_sse_python},
        profile=args.profile,
        py_spy=args.py_spy,
        machine=machine(),
    )
    return settings, report_path(args)


def check_flask_sse(settings: Settings) -> None:
    """Leave Flask-SSE out, with a note, if its virtualenv is missing."""
    if Path(settings.pythons["flask-sse"]).exists():
        return
    settings.notes.append(
        f"Flask-SSE was not measured: {settings.pythons['flask-sse']} is missing"
        " (`make bench-streams` creates it)."
    )
    settings.runs = [r for r in settings.runs if r[0] != "flask-sse"]
    print(settings.notes[-1], file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    settings, report = parse_args(argv)
    # The servers and the load client inherit it: 15,000 streams need more
    # than the usual soft limit of 1,024 open files.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    check_flask_sse(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    server = client.info("server")["redis_version"]
    maxclients = client.config_get("maxclients").get("maxclients", "?")
    settings.notes.insert(0, f"Redis {server} (maxclients {maxclients})")
    runs = []
    try:
        for name, n in settings.runs:
            runs.append(bench_one(name, n, settings, client))
            print(progress(runs[-1]), flush=True)
            time.sleep(2)
    finally:
        client.close()
    if not runs:
        return 1
    print("\n" + "\n".join(results_table(runs, settings.window)))
    print("\n" + "\n".join(cost_table(runs)))
    print("\n" + verdict(runs))
    if report is not None:
        SECTION.write(report, section(runs, settings))
        print(f"\nWrote {report.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
