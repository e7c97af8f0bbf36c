from __future__ import annotations

import json
import re

import pytest

from storefront.extensions import streams

from .conftest import CSRF


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


# The page shows what already happened, and its stream carries on from there.

_ITEM = re.compile(
    r'<li data-event-id="([^"]+)"><span class="text">([^<]*)</span>(.*?)</li>'
)


def feed(page):
    """The (id, text, rest) of each line the page's feed renders, top first."""
    return _ITEM.findall(page)


def last_event_id(page):
    return re.search(r'data-last-event-id="([^"]*)"', page)[1]


def broker_of(app):
    with app.app_context():
        return streams.broker


def test_the_page_renders_the_newest_public_events_newest_first_with_times(app, client):
    broker = broker_of(app)
    broker.publish(
        "activity", {"text": "Ada bought a mug", "at": "2024-12-07T14:03:09+00:00"}
    )
    broker.publish(
        "activity", {"text": "Someone bought a kettle", "at": "2024-12-08T09:30:00Z"}
    )
    newest = broker.publish("activity", "a plain message, no time")
    page = client.get("/activity").get_data(as_text=True)
    lines = feed(page)
    assert [text for _, text, _ in lines] == [
        "a plain message, no time",
        "Someone bought a kettle",
        "Ada bought a mug",
    ]
    assert lines[0][0] == newest
    assert lines[0][2] == ""
    assert (
        lines[1][2] == ' <time datetime="2024-12-08T09:30:00+00:00">8 Dec, 09:30</time>'
    )
    assert (
        lines[2][2] == ' <time datetime="2024-12-07T14:03:09+00:00">7 Dec, 14:03</time>'
    )
    assert last_event_id(page) == newest
    assert re.search(r'<p id="empty" class="muted" hidden>', page)


def test_the_page_shows_the_twenty_newest_and_escapes_their_text(app, client):
    broker = broker_of(app)
    for n in range(25):
        broker.publish("activity", {"text": f"event {n}"})
    broker.publish("activity", {"text": "<script>alert(1)</script>"})
    page = client.get("/activity").get_data(as_text=True)
    texts = [text for _, text, _ in feed(page)]
    assert texts == ["&lt;script&gt;alert(1)&lt;/script&gt;"] + [
        f"event {n}" for n in range(24, 5, -1)
    ]
    assert "<script>alert" not in page


def test_a_page_with_nothing_to_show_says_so_and_still_resumes_from_an_id(app, client):
    page = client.get("/activity").get_data(as_text=True)
    assert feed(page) == []
    assert (
        '<p id="empty" class="muted">Nothing has happened yet. Purchases show up'
        " here the moment they happen.</p>" in page
    )
    assert last_event_id(page) == f"{broker_of(app).epoch}-0"
    assert "cannot be shown right now" not in page


def test_the_status_is_announced_politely(client):
    page = client.get("/activity").get_data(as_text=True)
    assert '<p id="status" class="muted" role="status" aria-live="polite">' in page


def test_the_stream_opened_from_the_page_misses_nothing_and_repeats_nothing(
    app, client
):
    broker = broker_of(app)
    shown = [broker.publish("activity", {"text": f"before {n}"}) for n in range(3)]
    page = client.get("/activity").get_data(as_text=True)
    assert [event_id for event_id, _, _ in feed(page)] == shown[::-1]
    # Published after the page was rendered, before its stream connects.
    between = broker.publish("activity", {"text": "in between"})
    stream = client.get(
        f"/streams/activity?last_event_id={last_event_id(page)}", buffered=False
    )
    chunks = iter(stream.response)
    next(chunks)
    first = read_event(chunks)
    live = broker.publish("activity", {"text": "live"})
    second = read_event(chunks)
    stream.close()
    assert first.startswith(f"id: {between}\n".encode())
    assert b"in between" in first
    assert second.startswith(f"id: {live}\n".encode())
    assert all(b"before" not in frame for frame in (first, second))


def test_the_page_renders_while_redis_is_down_and_says_what_is_missing(
    app_factory, redis_process
):
    app = app_factory(REDIS_URL=redis_process.url)
    broker_of(app).publish("activity", {"text": "Ada bought a mug"})
    redis_process.stop()
    response = app.test_client().get("/activity")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Recent activity cannot be shown right now." in page
    assert last_event_id(page) == "", "the stream starts with the next event"
    assert feed(page) == []
    assert re.search(r'<p id="empty" class="muted" hidden>', page)

    redis_process.start()
    page = app.test_client().get("/activity").get_data(as_text=True)
    assert "cannot be shown" not in page
    assert [text for _, text, _ in feed(page)] == ["Ada bought a mug"]
    broker_of(app).close()


def test_a_purchase_is_announced_with_its_time(app):
    import datetime as dt

    from storefront.live import timestamp

    from .conftest import add_user
    from .conftest import log_in_as

    app.test_cli_runner().invoke(args=["demo"])
    buyer = app.test_client()
    log_in_as(app, buyer, add_user(app, "linus@example.com"))
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    assert buy(buyer, 2).status_code == 303
    (event,) = broker_of(app).recent("activity", 5).events
    at = dt.datetime.fromisoformat(json.loads(event.data)["at"])
    assert before <= at <= dt.datetime.now(dt.timezone.utc)
    assert at.utcoffset() == dt.timedelta(0)
    page = buyer.get("/activity").get_data(as_text=True)
    assert f'<time datetime="{at.isoformat()}">' in page
    assert timestamp().endswith("+00:00")


def buy(client, product_id):
    page = client.get(f"/products/{product_id}").get_data(as_text=True)
    token = CSRF.search(page)[1]
    return client.post(f"/products/{product_id}/purchase", data={"csrf_token": token})


# A user's own events stay theirs: never in the page, only on their stream.


def test_no_page_shows_a_users_own_order_in_its_history(app):
    from .conftest import add_user
    from .conftest import log_in_as

    app.test_cli_runner().invoke(args=["demo"])
    buyer, other = app.test_client(), app.test_client()
    log_in_as(app, buyer, add_user(app, "linus@example.com"))
    log_in_as(app, other, add_user(app, "hedy@example.com"))
    assert buy(buyer, 2).status_code == 303
    for client in (buyer, other, app.test_client()):
        page = client.get("/activity").get_data(as_text=True)
        assert [text for _, text, _ in feed(page)] == [
            "Someone bought Pour-over kettle"
        ]
        assert "confirmed: Pour-over kettle" not in page


def event_frames(response, count):
    """The next ``count`` event frames of a stream, past its opening."""
    chunks = iter(response.response)
    next(chunks)
    return [read_event(chunks) for _ in range(count)]


def test_a_users_order_reaches_only_their_own_stream_from_the_page(app):
    from .conftest import add_user
    from .conftest import log_in_as

    app.test_cli_runner().invoke(args=["demo"])
    buyer, other, visitor = app.test_client(), app.test_client(), app.test_client()
    log_in_as(app, buyer, add_user(app, "linus@example.com"))
    log_in_as(app, other, add_user(app, "hedy@example.com"))
    streams_of = {}
    for name, client in [("buyer", buyer), ("other", other), ("visitor", visitor)]:
        page = client.get("/activity").get_data(as_text=True)
        path = re.search(r'data-stream="([^"]+)"', page)[1]
        streams_of[name] = client.get(
            f"{path}?last_event_id={last_event_id(page)}", buffered=False
        )
    assert buy(buyer, 2).status_code == 303
    broker_of(app).publish("activity", {"text": "the next public event"})

    mine = event_frames(streams_of.pop("buyer"), 3)
    assert [
        b"Someone bought" in mine[0],
        b"Order 1 confirmed: Pour-over kettle" in mine[1],
    ] == [True, True]
    assert b"the next public event" in mine[2]
    for name, response in streams_of.items():
        seen = event_frames(response, 2)
        assert b"Someone bought Pour-over kettle" in seen[0], name
        assert b"the next public event" in seen[1], f"{name} got another's order"
        response.close()


@pytest.mark.parametrize(
    ("data", "text", "when"),
    [
        ('{"text":"a","at":"2024-01-02T03:04:05"}', "a", "2 Jan, 03:04"),
        ('{"text":"b","at":"2024-06-01T23:30:00+02:00"}', "b", "1 Jun, 21:30"),
        ('{"text":"c","at":"yesterday"}', "c", None),
        ('{"n":1,"at":5}', '{"n":1,"at":5}', None),
        ('"quoted"', "quoted", None),
    ],
)
def test_a_feed_line_reads_the_text_and_time_as_the_script_does(data, text, when):
    from flask_patterns.streams import StoredEvent
    from storefront.live import feed_item

    item = feed_item(StoredEvent("e-1", "activity", data))
    assert (item.id, item.text, item.when) == ("e-1", text, when)
