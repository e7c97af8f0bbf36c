"""The two apps and the publishers of the event-stream benchmark (``bench.streams``).

Both apps serve one channel, ``activity``, as a ``text/event-stream`` response
fanned out through Redis, and answer ``GET /health`` so that the driver knows
the worker is up:

- ``patterns_app()``: ``flask_patterns.streams.EventStreams`` with a
  ``RedisBroker``, ``GET /streams/activity``;
- ``flask_sse_app()``: Flask-SSE 1.0, unmodified, its blueprint mounted at
  ``/stream`` (``GET /stream?channel=activity``).

gunicorn loads them as ``bench.sse_apps:patterns_app()`` and
``bench.sse_apps:flask_sse_app()``. Each imports its library only when called,
so Flask-SSE's app runs in a virtualenv without flask-patterns and the other way
round. ``BENCH_STREAMS_REDIS_URL`` names the Redis database,
``BENCH_STREAMS_HEARTBEAT`` flask-patterns' heartbeat interval, and
``BENCH_STREAMS_DETACH=0`` keeps each flask-patterns stream in its request,
and ``BENCH_STREAMS_METRICS=1`` turns its Prometheus metrics on.
flask-patterns' broker uses a key prefix of its own, so that nothing else using
the same Redis server shares its keys or its notification channel.

``python -m bench.sse_apps IMPL --events 20 --interval 0.5`` publishes events the
way each library's users do: ``RedisBroker(url).publish(...)`` without a Flask
app, or ``sse.publish(...)`` inside an app context. Each event's data is
``{"t": time.time(), "seq": n}``, ``t`` taken just before the publish call, so
the client's latency includes the publish itself. It prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import typing as t
from collections import Counter

from flask import Flask

CHANNEL = "activity"
REDIS_URL_ENV = "BENCH_STREAMS_REDIS_URL"
HEARTBEAT_ENV = "BENCH_STREAMS_HEARTBEAT"
DETACH_ENV = "BENCH_STREAMS_DETACH"
METRICS_ENV = "BENCH_STREAMS_METRICS"
PREFIX = "{flask-patterns-bench}:"
IMPLEMENTATIONS = ("flask-patterns", "flask-sse")

Publish = t.Callable[[dict[str, object]], object]


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379/14")


def health() -> str:
    return "ok"


def patterns_app() -> Flask:
    """flask-patterns: one subscriber connection per process, fanned out."""
    from flask_patterns.streams import EventStreams
    from flask_patterns.streams import RedisBroker

    app = Flask("bench_streams_patterns")
    app.config["PATTERNS_STREAMS_HEARTBEAT"] = float(
        os.environ.get(HEARTBEAT_ENV, "15")
    )
    # A public feed: no stream token needed.
    app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = (CHANNEL,)
    # The load client opens every stream from one address: no per-client cap.
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 0
    app.config["PATTERNS_STREAMS_DETACH"] = os.environ.get(DETACH_ENV, "1") != "0"
    streams = EventStreams(app, broker=RedisBroker(redis_url(), prefix=PREFIX))
    if os.environ.get(METRICS_ENV) == "1":
        from flask_patterns.metrics import Metrics

        Metrics(app)

    @app.get("/streams/activity")
    def activity() -> t.Any:
        return streams.response(CHANNEL)

    app.add_url_rule("/health", view_func=health)
    return app


def flask_sse_app() -> Flask:
    """Flask-SSE 1.0: one Redis pub/sub connection per stream."""
    from flask_sse import sse  # type: ignore[import-not-found]

    app = Flask("bench_streams_flask_sse")
    app.config["REDIS_URL"] = redis_url()
    app.register_blueprint(sse, url_prefix="/stream")
    app.add_url_rule("/health", view_func=health)
    return app


def publisher(implementation: str) -> Publish:
    if implementation == "flask-patterns":
        from flask_patterns.streams import RedisBroker

        broker = RedisBroker(redis_url(), prefix=PREFIX)
        return lambda data: broker.publish(CHANNEL, data)
    from flask_sse import sse

    app = flask_sse_app()

    def publish(data: dict[str, object]) -> object:
        with app.app_context():
            return sse.publish(data, channel=CHANNEL)

    return publish


def publish_events(
    implementation: str, events: int, interval: float
) -> dict[str, t.Any]:
    """Publish ``events`` events, one every ``interval`` seconds."""
    publish = publisher(implementation)
    errors: Counter[str] = Counter()
    published: list[int] = []
    durations: list[float] = []
    receivers: list[int] = []
    start = time.monotonic() + 0.1
    for seq in range(events):
        time.sleep(max(0.0, start + seq * interval - time.monotonic()))
        sent = time.time()
        try:
            result = publish({"t": sent, "seq": seq})
        except Exception as error:
            errors[f"{type(error).__name__}: {error}"[:160]] += 1
            continue
        durations.append(time.time() - sent)
        published.append(seq)
        if implementation == "flask-sse":
            receivers.append(int(t.cast(int, result)))
    return {
        "published": published,
        "errors": dict(errors),
        "max_publish_seconds": max(durations, default=0.0),
        "receivers": receivers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish benchmark events.")
    parser.add_argument("implementation", choices=IMPLEMENTATIONS)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    result = publish_events(args.implementation, args.events, args.interval)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
