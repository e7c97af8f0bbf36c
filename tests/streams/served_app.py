"""The app the fault tests serve with a real gunicorn gevent worker: streams
from the Redis at ``$REDIS_URL``, every channel public, ``/open`` says how many
streams the worker holds, ``/held`` how many of them are detached and how many
greenlets the worker has, ``POST /publish/<channel>?count=&size=`` publishes
and ``POST /end/<channel>`` ends a channel's streams."""

from __future__ import annotations

import gc
import json
import os
import resource

import greenlet
from flask import Flask
from flask import request

from flask_patterns.streams import EventStreams
from flask_patterns.streams import RedisBroker
from flask_patterns.streams.detached import DetachedStream

app = Flask(__name__)
app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"] = ["*"]
app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 0
for name in (
    "WRITE_TIMEOUT",
    "QUEUE_LIMIT",
    "HEARTBEAT",
    "MAX_LIFETIME",
    "DETACH",
    "MAX_PER_CLIENT",
):
    if f"STREAMS_{name}" in os.environ:
        app.config[f"PATTERNS_STREAMS_{name}"] = float(os.environ[f"STREAMS_{name}"])
if "STREAMS_OPEN_FILES" in os.environ:  # the worker's soft limit
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (int(os.environ["STREAMS_OPEN_FILES"]), hard)
    )
broker = RedisBroker(
    os.environ["REDIS_URL"],
    history_survives_restart=os.environ.get("STREAMS_SURVIVES") == "1",
    health_interval=0.5,
)
streams = EventStreams(app, broker=broker)


@app.get("/streams/<path:names>")
def stream(names: str) -> object:
    return streams.response(*names.split(","))


@app.get("/open")
def open_streams() -> str:
    return str(broker.open_listeners())


@app.post("/publish/<channel>")
def publish(channel: str) -> str:
    count = int(request.args.get("count", 1))
    size = int(request.args.get("size", 10))
    ids = [broker.publish(channel, f"{n}:" + "x" * size) for n in range(count)]
    return ids[-1]


@app.get("/held")
def held() -> str:
    greenlets = sum(isinstance(o, greenlet.greenlet) for o in gc.get_objects())
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return json.dumps(
        {"detached": DetachedStream.open_count, "greenlets": greenlets, "files": files}
    )


@app.post("/end/<channel>")
def end(channel: str) -> str:
    broker.end_channel(channel)
    return "ok"
