"""The first example of docs/event-streams.md works as written: run against the
test Redis, its stream delivers what its route publishes, and the channels it
does not list as public answer 403 with the setting that would open them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.streams.conftest import open_stream

from flask_patterns.streams.extension import event_relay

from .docs_examples import close_what_it_opened
from .docs_examples import python_fences
from .docs_examples import run_module

PAGE = Path(__file__).resolve().parent.parent / "docs" / "event-streams.md"
PAGE_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def example(tmp_path, redis_url, monkeypatch):
    """The page's example module, run from a file of its own (so that its
    instance folder, and the SQLite database in it, are the test's), with the
    test Redis instead of the page's."""
    fences = python_fences(PAGE)
    assert fences, f"no python block in {PAGE.name}"
    code = fences[0][1]
    assert PAGE_REDIS_URL in code, "the example no longer names the Redis URL"
    code = code.replace(PAGE_REDIS_URL, redis_url)
    module = run_module(code, "docs_streams", tmp_path, monkeypatch)
    yield module
    close_what_it_opened(vars(module))


def test_the_example_stream_delivers_what_its_route_publishes(example):
    app = example.app
    assert Path(app.instance_path).parent == Path(example.__file__).parent
    reader = open_stream(app, "/streams/activity")
    try:
        with app.app_context():
            assert example.streams.broker.wait_until_subscribed(10)
        response = app.test_client().post("/orders")
        assert response.status_code == 200
        assert response.text == "ok"

        (event,) = reader.events(1, timeout=10)
        assert json.loads(event["data"]) == {"text": "Ada bought a mug"}
        assert "event" not in event, "a plain message: EventSource's onmessage"
        assert re.fullmatch(r"[a-z0-9]+-1", event["id"]), event["id"]
    finally:
        reader.close()

    with app.app_context():
        assert event_relay(app).held() == 0, "relayed and forgotten"


def test_a_reconnecting_client_gets_what_it_missed(example):
    app = example.app
    client = app.test_client()
    for _ in range(2):
        assert client.post("/orders").status_code == 200
    with app.app_context():
        history = example.streams.broker.replay(["activity"], 0).events
    first, second = (stored.id for stored in history)

    reader = open_stream(app, "/streams/activity", **{"Last-Event-ID": first})
    try:
        (event,) = reader.events(1, timeout=10)
        assert event["id"] == second
        assert json.loads(event["data"]) == {"text": "Ada bought a mug"}
    finally:
        reader.close()


def test_a_channel_the_example_does_not_list_as_public_is_refused(example):
    app = example.app
    app.add_url_rule(
        "/streams/orders", "orders", lambda: example.streams.response("orders")
    )
    response = app.test_client().get("/streams/orders")
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "Channel orders is private" in text
    assert "PATTERNS_STREAMS_PUBLIC_CHANNELS" in text
