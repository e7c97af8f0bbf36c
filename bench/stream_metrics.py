"""What the library's Prometheus metrics cost a stream worker: deliveries per
worker CPU-second with metrics on and off, side by side.

Both variants are ``bench.streams``' flask-patterns server (one gunicorn
gevent worker, detached streams, a ``RedisBroker``) measured by its load
client and publisher; *metrics on* also registers
:class:`flask_patterns.metrics.Metrics` on the app, in prometheus_client's
multiprocess mode (a fresh ``PROMETHEUS_MULTIPROC_DIR`` per run), as the
deployment's stream pool runs it. The runs alternate, off, on, on, off, and
so on, so that both meet the same noise, and the medians are compared; the
target is that metrics on keeps at least 95 % of the deliveries per
CPU-second of metrics off. After each run with metrics on, the counters the
worker wrote are read back, to show that they counted every delivery.

Run it with ``make bench-stream-metrics``; it rewrites its own section of
``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path

import redis

from bench import streams
from bench.report import add_report_options
from bench.report import echoed_arguments
from bench.report import report_path
from bench.report import run_time
from bench.report import Section

SECTION = Section("stream-metrics")
TARGET = 0.95
OFF, ON = "flask-patterns", "metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class Counted:
    """What the metrics of one run with metrics on say, read back from the
    worker's files."""

    events_sent: float = 0.0
    streams_opened: float = 0.0
    latency_count: float = 0.0


@dataclass
class Comparison:
    streams: int
    runs: list[streams.Run] = field(default_factory=list)
    counted: list[Counted] = field(default_factory=list)

    def of(self, name: str) -> list[streams.Run]:
        return [r for r in self.runs if r.implementation == name]

    def median(self, name: str) -> float:
        return statistics.median(r.per_cpu_second for r in self.of(name))

    @property
    def ratio(self) -> float:
        return self.median(ON) / self.median(OFF)


def order(pairs: int) -> list[str]:
    """Off, on, on, off, off, on, ...: each variant goes first as often."""
    return [
        name for n in range(pairs) for name in ((OFF, ON) if n % 2 == 0 else (ON, OFF))
    ]


def read_counts(directory: str) -> Counted:
    """Sum what the worker's metric files hold."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    counted = Counted()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "flask_patterns_stream_events_sent_total":
                counted.events_sent += sample.value
            elif sample.name == "flask_patterns_stream_disconnects_total":
                counted.streams_opened += sample.value
            elif sample.name == "flask_patterns_stream_publish_to_send_seconds_count":
                counted.latency_count += sample.value
    return counted


@contextlib.contextmanager
def multiproc_dir(on: bool) -> t.Iterator[str | None]:
    """A fresh metrics directory for the server of a run with metrics on (the
    server inherits this process' environment), none for one with them off."""
    os.environ.pop(MULTIPROC_ENV, None)
    if not on:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield directory
        finally:
            os.environ.pop(MULTIPROC_ENV, None)


def compare(
    n: int, pairs: int, settings: streams.Settings, client: redis.Redis
) -> Comparison:
    comparison = Comparison(n)
    for name in order(pairs):
        with multiproc_dir(name == ON) as directory:
            run = streams.bench_one(name, n, settings, client)
            if directory is not None:
                comparison.counted.append(read_counts(directory))
        comparison.runs.append(run)
        print(streams.progress(run), flush=True)
        time.sleep(2)
    return comparison


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def summary_table(comparisons: list[Comparison]) -> list[str]:
    lines = [
        "| Streams | Runs each | Deliveries per CPU-second, metrics off (median)"
        " | Metrics on (median) | On / off | Per run, off | Per run, on"
        " | Every event to every stream | Target met |",
        "|---:|---:|---:|---:|---:|---|---|---|---|",
    ]
    for c in comparisons:
        per = {
            name: ", ".join(f"{r.per_cpu_second:,.0f}" for r in c.of(name))
            for name in (OFF, ON)
        }
        complete = all(r.delivery == 1.0 for r in c.runs)
        lines.append(
            f"| {c.streams:,} | {len(c.of(ON))} | {c.median(OFF):,.0f}"
            f" | {c.median(ON):,.0f} | **{percent(c.ratio)}** | {per[OFF]}"
            f" | {per[ON]} | {'yes' if complete else 'no'}"
            f" | {'yes' if c.ratio >= TARGET else 'no'} |"
        )
    return lines


def counted_table(comparisons: list[Comparison]) -> list[str]:
    lines = [
        "| Streams | Run | Deliveries received by the client"
        " | `flask_patterns_stream_events_sent_total`"
        " | `..._publish_to_send_seconds` observations"
        " | Streams ended (`..._stream_disconnects_total`) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for c in comparisons:
        for i, (run, counted) in enumerate(zip(c.of(ON), c.counted, strict=True)):
            lines.append(
                f"| {c.streams:,} | {i + 1} | {run.received:,}"
                f" | {counted.events_sent:,.0f} | {counted.latency_count:,.0f}"
                f" | {counted.streams_opened:,.0f} |"
            )
    return lines


def method(settings: streams.Settings, pairs: int) -> list[str]:
    return [
        "- Server, load client and publisher: those of `bench.streams` (see its"
        " section): one gunicorn process with one gevent worker serving"
        " `GET /streams/activity` from a `RedisBroker`, detached streams,"
        f" heartbeat {settings.heartbeat:g} s; {settings.events} events, one"
        f" every {settings.interval:g} s, to every stream.",
        "- *Metrics on*: the same app with `flask_patterns.metrics.Metrics(app)`,"
        " in prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`"
        " set to a fresh directory for each run), as the deployment's stream"
        " pool runs it. *Metrics off*: without them (prometheus_client is not"
        " even imported).",
        f"- {pairs} runs of each, alternating off, on, on, off, ... . A run's"
        " figure is the (event, stream) pairs the client received over the"
        " worker's user + system CPU time from the first publish to the end of"
        " the drain; the medians are compared.",
        "- After each run with metrics on, the worker's metric files are read"
        " back with `prometheus_client.multiprocess.MultiProcessCollector`: the"
        " events counted as sent must match the deliveries received.",
    ]


def section(
    comparisons: list[Comparison], settings: streams.Settings, pairs: int, argv: str
) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    meets = all(c.ratio >= TARGET for c in comparisons)
    parts = [
        SECTION.start,
        "## Event streams with metrics on and off",
        "",
        f"- Date: {run_time()}",
        f"- Machine: {settings.machine}, {load} at the end",
        f"- Software: {streams.software(settings)},"
        f" prometheus_client {metadata.version('prometheus_client')},"
        f" {settings.notes[0]}",
        "- Command: `make bench-stream-metrics`"
        f" (`python -m bench.stream_metrics{argv}`)",
        "",
        "Method:",
        "",
        *method(settings, pairs),
        "",
        *summary_table(comparisons),
        "",
        "Target, metrics on >= 95 % of the deliveries per CPU-second with metrics"
        f" off: **{'met' if meets else 'not met'}**.",
        "",
        "What the metrics counted in the runs with metrics on:",
        "",
        *counted_table(comparisons),
        SECTION.end,
    ]
    return "\n".join(parts) + "\n"


def parse_args(
    argv: list[str] | None,
) -> tuple[list[int], int, streams.Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[10_000])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--events", type=int, default=20)
    add_report_options(parser)
    args = parser.parse_args(argv)
    no_runs = ["--ceiling", "--patterns", "--attached", "--flask-sse"]
    settings, _ = streams.parse_args([*no_runs, "--events", str(args.events)])
    # Flask-SSE is not measured here: its virtualenv is not needed.
    settings.pythons.pop("flask-sse", None)
    return args.streams, args.pairs, settings, report_path(args)


def main(argv: list[str] | None = None) -> int:
    counts, pairs, settings, report = parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    server = client.info("server")["redis_version"]
    settings.notes.insert(0, f"Redis {server}")
    try:
        comparisons = [compare(n, pairs, settings, client) for n in counts]
    finally:
        client.close()
    print("\n" + "\n".join(summary_table(comparisons)))
    print("\n" + "\n".join(counted_table(comparisons)))
    if report is not None:
        argv_text = echoed_arguments(argv)
        SECTION.write(report, section(comparisons, settings, pairs, argv_text))
        print(f"\nWrote {report.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
