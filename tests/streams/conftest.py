"""Apps, brokers and a stream reader shared by the tests of the streams
package."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from flask import Flask

from flask_patterns.db import Database
from flask_patterns.streams import EventStreams
from flask_patterns.streams import MemoryBroker
from flask_patterns.streams import RedisBroker
from flask_patterns.tokens import Tokens


def make_app(tmp_path, broker=None, public=("*",), **options):
    """An app with the extensions streams use, and ``/streams/<a,b,...>``."""
    app = Flask(__name__)
    app.config["PATTERNS_DATABASE_URL"] = f"sqlite:///{tmp_path}/s.db"
    app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = public
    app.config["PATTERNS_STREAMS_HEARTBEAT"] = 0.05
    app.config["SECRET_KEY"] = "stream tokens"
    Database(app)
    Tokens(app)
    streams = EventStreams(app, broker=broker or MemoryBroker(), **options)
    app.add_url_rule(
        "/streams/<path:names>",
        "stream",
        lambda names: streams.response(*names.split(",")),
    )
    app.extensions["test.streams"] = streams
    return app


def history(broker, channel):
    """The (id, data, event) of each event the broker keeps for ``channel``."""
    return [(e.id, e.data, e.event) for e in broker.replay([channel], 0).events]


@pytest.fixture(params=["memory", "redis"])
def broker(request):
    """Each test using it runs on a memory broker and on Redis."""
    if request.param == "memory":
        yield MemoryBroker(history=3)
        return
    url = request.getfixturevalue("redis_url")
    broker = RedisBroker(url, history=3, prefix="{test}:", health_interval=0.5)
    yield broker
    broker.close()


@pytest.fixture
def stream_app(tmp_path, broker):
    return make_app(tmp_path, broker)


def redis_stream_app(tmp_path, url):
    """An app streaming ``activity`` at ``/streams/activity`` from Redis at
    ``url``, with its broker."""
    broker = RedisBroker(url, health_interval=0.2)
    return make_app(tmp_path, broker), broker


class Reader:
    """Reads a streamed response chunk by chunk, as a browser would parse it."""

    def __init__(self, response):
        self.response = response
        self.chunks = iter(response.response)
        self.comments = 0

    def frames(self, count, timeout=10.0):
        """The next ``count`` frames that are not heartbeat comments."""
        frames = []
        deadline = time.monotonic() + timeout
        while len(frames) < count:
            assert time.monotonic() < deadline, f"only {len(frames)} of {count} frames"
            chunk = next(self.chunks)
            if chunk == b":\n\n":
                self.comments += 1
                continue
            frames.append(chunk)
        return frames

    def events(self, count, timeout=10.0):
        return [parse_frame(frame) for frame in self.frames(count, timeout)]

    def rest(self):
        """Everything until the stream ends, heartbeats left out."""
        return [chunk for chunk in self.chunks if chunk != b":\n\n"]

    def close(self):
        self.response.close()


def parse_frame(frame):
    fields = {}
    for line in filter(None, frame.decode().split("\n")):
        name, _, value = line.partition(": ")
        fields.setdefault(name.rstrip(":"), []).append(value)
    return {k: "\n".join(v) for k, v in fields.items()}


def open_stream(app, path, **headers):
    """A stream of ``app`` at ``path``, past its opening frame."""
    response = app.test_client().get(path, headers=headers, buffered=False)
    reader = Reader(response)
    opening = next(reader.chunks)
    assert opening == b"retry: 3000\n\n: open\n\n"
    return reader


def open_count(app, client):
    with app.app_context():
        return app.extensions["test.streams"].open_streams(client)


def run_under_gevent(script: str) -> None:
    """Run ``script`` in a fresh, monkey-patched interpreter; it prints "ok"."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def serve(redis_url, tmp_path):
    """Start ``served_app`` under a real gunicorn gevent worker with the
    given ``STREAMS_*`` settings; every worker started stops at the end."""
    from conftest import free_port

    from .serving import Served

    started = []

    def serve(**settings):
        log = tmp_path / f"gunicorn-{len(started)}.log"
        served = Served(redis_url, free_port(), log, **settings)
        started.append(served)
        return served

    yield serve
    for served in started:
        served.stop()
