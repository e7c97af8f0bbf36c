"""The cap on the open streams of one client in a process."""

from __future__ import annotations

import pytest
from flask import request

from flask_patterns.streams.slots import ClientSlots

from .conftest import make_app
from .conftest import open_count


def open_streams(client, count, path="/streams/activity", **kwargs):
    return [client.get(path, buffered=False, **kwargs) for _ in range(count)]


# The cap on open streams per client


def test_a_client_over_the_cap_gets_429_with_retry_after_and_a_reason(tmp_path):
    app = make_app(tmp_path)
    client = app.test_client()
    held = open_streams(client, 10)
    assert [r.status_code for r in held] == [200] * 10
    refused = client.get("/streams/activity", buffered=False)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "at most 10 per client" in refused.get_data(as_text=True)
    assert not refused.content_type.startswith("text/event-stream")
    assert open_count(app, "127.0.0.1") == 10
    for response in held:
        response.close()


def test_a_closed_stream_gives_its_slot_back(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 2
    client = app.test_client()
    first, second = open_streams(client, 2)
    assert client.get("/streams/activity", buffered=False).status_code == 429
    first.close()
    assert open_count(app, "127.0.0.1") == 1
    third = client.get("/streams/activity", buffered=False)
    assert third.status_code == 200
    for response in (second, third):
        response.close()
    assert open_count(app, "127.0.0.1") == 0


def test_a_head_request_whose_stream_never_starts_gives_its_slot_back(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    for _ in range(3):
        response = client.head("/streams/activity")
        assert response.status_code == 200
        assert response.data == b""
        response.close()  # what a WSGI server does with every body
    assert open_count(app, "127.0.0.1") == 0


def test_clients_are_counted_apart(tmp_path):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    mine = client.get("/streams/activity", buffered=False)
    other = client.get(
        "/streams/activity",
        buffered=False,
        environ_overrides={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert (mine.status_code, other.status_code) == (200, 200)
    assert open_count(app, "192.0.2.7") == 1
    mine.close()
    other.close()


def test_the_client_key_decides_who_a_client_is(tmp_path):
    app = make_app(tmp_path, client_key=lambda: request.headers.get("X-User", "anon"))
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    ada = client.get("/streams/activity", headers={"X-User": "ada"}, buffered=False)
    again = client.get("/streams/activity", headers={"X-User": "ada"}, buffered=False)
    bob = client.get("/streams/activity", headers={"X-User": "bob"}, buffered=False)
    assert [r.status_code for r in (ada, again, bob)] == [200, 429, 200]
    ada.close()
    bob.close()


@pytest.mark.parametrize("off", [0, None])
def test_a_cap_of_zero_or_none_is_no_cap(tmp_path, off):
    app = make_app(tmp_path)
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = off
    held = open_streams(app.test_client(), 15)
    assert {r.status_code for r in held} == {200}
    for response in held:
        response.close()


def test_a_refused_private_stream_takes_no_slot(tmp_path):
    app = make_app(tmp_path, public=["activity"])
    app.config["PATTERNS_STREAMS_MAX_PER_CLIENT"] = 1
    client = app.test_client()
    assert client.get("/streams/user:ada").status_code == 403
    assert open_count(app, "127.0.0.1") == 0
    response = client.get("/streams/activity", buffered=False)
    assert response.status_code == 200
    response.close()


def test_a_slot_given_back_twice_counts_once():
    slots = ClientSlots()
    first = slots.take("ada", 2)
    second = slots.take("ada", 2)
    assert slots.take("ada", 2) is None
    first()
    first()
    assert slots.held("ada") == 1
    second()
    assert slots.held("ada") == 0
