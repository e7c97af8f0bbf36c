from __future__ import annotations

import json
import re

from storefront.extensions import streams


def test_activity_page_listens_to_the_activity_stream(client):
    page = client.get("/activity").get_data(as_text=True)
    assert 'data-stream="/streams/activity"' in page
    assert re.search(r'src="/static/activity\.[0-9a-f]{12}\.js"', page)


def read_event(chunks):
    for chunk in chunks:
        if chunk.startswith(b"id:"):
            return chunk


def test_activity_stream_sends_each_published_value_as_one_data_line(app, client):
    response = client.get("/streams/activity", buffered=False)
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry: ")
    with app.app_context():
        streams.publish("activity", {"text": "Ada bought a mug", "lines": "a\nb"})
    frame = read_event(chunks)
    data_lines = [line for line in frame.split(b"\n") if line.startswith(b"data:")]
    assert len(data_lines) == 1
    assert json.loads(data_lines[0][len(b"data: ") :]) == {
        "text": "Ada bought a mug",
        "lines": "a\nb",
    }
    response.response.close()


def test_activity_stream_replays_from_last_event_id(app, client):
    with app.app_context():
        broker = streams.broker
    first = broker.publish("activity", {"n": 1})
    broker.publish("activity", {"n": 2})
    response = client.get(
        "/streams/activity", headers={"Last-Event-ID": first}, buffered=False
    )
    chunks = iter(response.response)
    next(chunks)
    assert b'data: {"n":2}' in read_event(chunks)
    response.response.close()


def test_a_logged_in_user_holds_at_most_ten_streams_wherever_they_come_from(
    app, client
):
    from .conftest import add_user
    from .conftest import log_in_as

    user_id = add_user(app, "ada@example.com")
    log_in_as(app, client, user_id)
    held = [
        client.get(
            "/streams/live",
            buffered=False,
            environ_overrides={"REMOTE_ADDR": f"192.0.2.{n}"},
        )
        for n in range(10)
    ]
    assert {r.status_code for r in held} == {200}
    refused = client.get(
        "/streams/live", environ_overrides={"REMOTE_ADDR": "192.0.2.99"}
    )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "15"
    assert "at most 10 per client" in refused.get_data(as_text=True)
    with app.app_context():
        assert streams.open_streams(f"user:{user_id}") == 10
    # A visitor on one of those addresses is another client.
    visitor = app.test_client().get(
        "/streams/activity",
        buffered=False,
        environ_overrides={"REMOTE_ADDR": "192.0.2.1"},
    )
    assert visitor.status_code == 200
    for response in [*held, visitor]:
        response.close()


def test_visitors_are_capped_by_address(app):
    client = app.test_client()
    held = [client.get("/streams/activity", buffered=False) for _ in range(10)]
    assert client.get("/streams/activity").status_code == 429
    with app.app_context():
        assert streams.open_streams("address:127.0.0.1") == 10
    for response in held:
        response.close()
    with app.app_context():
        assert streams.open_streams("address:127.0.0.1") == 0
