"""Public channels by pattern, private ones by a signed channel token."""

from __future__ import annotations

import time

import pytest

from .conftest import make_app


@pytest.fixture
def private_app(tmp_path):
    app = make_app(tmp_path, public=("activity", "news:*"))
    streams = app.extensions["test.streams"]
    with app.test_request_context():
        tokens = {
            "ada": streams.channel_token("user:ada"),
            "both": streams.channel_token("user:ada", "user:bob"),
        }
    return app, tokens


def status(app, path, **kwargs):
    response = app.test_client().get(path, buffered=False, **kwargs)
    code = response.status_code
    response.close()
    return code


def test_public_channels_need_no_token(private_app):
    app, _ = private_app
    assert status(app, "/streams/activity") == 200
    assert status(app, "/streams/news:today,activity") == 200


def test_private_channel_without_a_token_is_refused_before_streaming(private_app):
    app, _ = private_app
    response = app.test_client().get("/streams/user:ada")
    assert response.status_code == 403
    message = response.get_data(as_text=True)
    assert "Channel user:ada is private" in message
    assert "PATTERNS_STREAMS_PUBLIC_CHANNELS" in message
    assert "X-Stream-Token header or the stream_token cookie" in message
    assert not response.content_type.startswith("text/event-stream")


@pytest.mark.parametrize("how", ["header", "cookie"])
def test_channel_token_in_a_header_or_cookie_grants_its_channels(private_app, how):
    app, tokens = private_app
    client = app.test_client()
    if how == "header":
        response = client.get(
            "/streams/user:ada,activity",
            headers={"X-Stream-Token": tokens["ada"]},
            buffered=False,
        )
    else:
        client.set_cookie("stream_token", tokens["ada"])
        response = client.get("/streams/user:ada,activity", buffered=False)
    assert response.status_code == 200
    response.close()


@pytest.mark.parametrize(
    ("path", "token", "expected"),
    [
        ("/streams/user:bob", "ada", 403),
        ("/streams/user:ada,user:bob", "ada", 403),
        ("/streams/user:ada,user:bob", "both", 200),
        ("/streams/user:ada", "tampered", 403),
        ("/streams/user:ada", "garbage", 403),
    ],
)
def test_tokens_grant_exactly_their_channels(private_app, path, token, expected):
    app, tokens = private_app
    value = {
        "tampered": tokens["ada"][:-2]
        + ("AA" if not tokens["ada"].endswith("AA") else "BB"),
        "garbage": "not a token",
    }.get(token, tokens.get(token))
    assert status(app, path, headers={"X-Stream-Token": value}) == expected


def test_expired_channel_token_is_refused(private_app, monkeypatch):
    app, tokens = private_app
    later = time.time() + app.config["PATTERNS_STREAMS_TOKEN_MAX_AGE"] + 10
    monkeypatch.setattr(time, "time", lambda: later)
    assert (
        status(app, "/streams/user:ada", headers={"X-Stream-Token": tokens["ada"]})
        == 403
    )


def test_granted_channels_are_those_of_the_token(private_app):
    app, tokens = private_app
    streams = app.extensions["test.streams"]
    with app.test_request_context(headers={"X-Stream-Token": tokens["both"]}):
        assert streams.granted_channels() == {"user:ada", "user:bob"}
    with app.test_request_context():
        assert streams.granted_channels() == frozenset()


def test_a_channel_token_checks_its_channels(private_app):
    app, _ = private_app
    with app.test_request_context(), pytest.raises(ValueError, match="Invalid"):
        app.extensions["test.streams"].channel_token("a b")
