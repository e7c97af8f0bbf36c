"""The app the metrics tests serve with a real gunicorn: streams from the Redis
at ``$REDIS_URL`` (each stream names its worker in ``X-Worker``), a unit of
work per ``POST /write`` (answered with the worker's pid), ``GET /metrics``,
``GET /open`` (streams open in the worker that answers), ``POST
/publish/<channel>`` and ``POST /close`` (``close_streams`` in that worker)."""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask
from flask import Response

from flask_patterns.db import Database
from flask_patterns.metrics import Metrics
from flask_patterns.streams import close_streams
from flask_patterns.streams import EventStreams
from flask_patterns.streams import RedisBroker

app = Flask(__name__)
app.config["PATTERNS_DATABASE_URL"] = os.environ["METRICS_DATABASE_URL"]
app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = ["*"]
app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 0
for name in ("HEARTBEAT", "MAX_LIFETIME"):
    if f"STREAMS_{name}" in os.environ:
        app.config[f"PATTERNS_STREAMS_{name}"] = float(os.environ[f"STREAMS_{name}"])
db = Database(app)
broker = RedisBroker(os.environ["REDIS_URL"], health_interval=0.5)
streams = EventStreams(app, broker=broker)
metrics = Metrics(app)


@app.get("/streams/<path:names>")
def stream(names: str) -> Response:
    response = streams.response(*names.split(","))
    response.headers["X-Worker"] = str(os.getpid())
    return response


@app.post("/write")
def write() -> str:
    db.session.execute(sa.text("SELECT 1"))
    return str(os.getpid())


@app.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


@app.get("/open")
def open_streams() -> str:
    return str(broker.open_listeners())


@app.post("/publish/<channel>")
def publish(channel: str) -> str:
    return broker.publish(channel, "published")


@app.post("/close")
def close() -> str:
    return str(close_streams(app))
