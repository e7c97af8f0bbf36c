"""Views that read their body as a stream: form parsing off for them alone,
limits that say themselves, short bodies, and the request class."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from flask import request
from flask.wrappers import Request

from flask_patterns.bodies import Bodies
from flask_patterns.bodies import stream_body
from flask_patterns.bodies import StreamingRequest

from .conftest import chunked
from .conftest import FORM
from .conftest import KIB
from .conftest import put
from .conftest import short
from .conftest import URLENCODED


def test_a_streaming_view_gets_the_raw_body_of_a_form_unparsed(client):
    response = put(client, "/raw", FORM, content_type=URLENCODED)
    assert response.get_json() == {
        "wanted": False,
        "form": {},
        "files": 0,
        "body": FORM.decode(),
    }


def test_other_views_keep_parsing_forms(client):
    response = client.post("/form", data=FORM, content_type=URLENCODED)
    assert response.get_json() == {"wanted": True, "name": "ada", "colour": "green"}


def test_a_hook_reading_the_form_before_a_streaming_view_leaves_the_body(app, client):
    seen = []

    @app.before_request
    def like_a_csrf_check() -> None:
        seen.append((request.form.get("csrf_token"), request.values.to_dict()))

    response = put(client, "/raw", FORM, content_type=URLENCODED)
    assert response.get_json()["body"] == FORM.decode()
    assert seen == [(None, {})]


@pytest.mark.parametrize(
    "read",
    [
        lambda: request.get_data(),
        lambda: request.get_data(as_text=True),
        lambda: request.data,
        lambda: request.get_json(force=True),
    ],
)
def test_buffering_the_body_of_a_streaming_view_is_refused(app, client, read):
    @app.put("/buffer")
    @stream_body()
    def buffer() -> object:
        return read()

    with pytest.raises(RuntimeError, match="streams its body"):
        put(client, "/buffer", b"{}", content_type="application/json")


def test_the_app_limit_answers_413_with_the_limit_in_the_message(client):
    response = put(client, "/raw", b"x" * (KIB + 1))
    assert response.status_code == 413
    assert "over the limit of 1024 bytes (1 KiB)" in response.get_data(as_text=True)


def test_the_app_limit_on_a_form_view_says_the_limit_too(client):
    response = client.post("/form", data=b"a=" + b"x" * KIB, content_type=URLENCODED)
    assert response.status_code == 413
    assert "over the limit of 1024 bytes (1 KiB)" in response.get_data(as_text=True)


def test_a_view_limit_replaces_the_app_limit(client):
    assert put(client, "/big", b"x" * (4 * KIB)).get_json() == {"size": 4 * KIB}
    response = put(client, "/big", b"x" * (4 * KIB + 1))
    assert response.status_code == 413
    assert "4096 bytes (4 KiB)" in response.get_data(as_text=True)


def test_a_chunked_body_within_the_limit_is_read_whole(client):
    assert chunked(client, "/big", b"x" * 3000).get_json() == {"size": 3000}


def test_a_chunked_body_over_the_limit_answers_413_while_reading(client):
    response = chunked(client, "/big", b"x" * (10 * KIB))
    assert response.status_code == 413
    assert "4096 bytes (4 KiB)" in response.get_data(as_text=True)


def test_a_chunked_body_the_server_does_not_bound_answers_411(client):
    response = client.put(
        "/big",
        input_stream=io.BytesIO(b"x" * 10),
        content_type="application/octet-stream",
        headers={"Transfer-Encoding": "chunked"},
    )
    assert response.status_code == 411
    assert "cannot bound a chunked body" in response.get_data(as_text=True)


def test_a_body_exactly_at_the_limit_is_accepted_behind_a_terminating_server(client):
    response = client.put(
        "/big",
        input_stream=io.BytesIO(b"x" * (4 * KIB)),
        content_length=4 * KIB,
        content_type="application/octet-stream",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.get_json() == {"size": 4 * KIB}


def test_a_wrong_content_type_answers_415_before_the_body_is_read(client):
    response = put(client, "/image", b"GIF89a", content_type="image/gif")
    assert response.status_code == 415
    assert "image/jpeg, image/png" in response.get_data(as_text=True)
    assert put(client, "/image", b"", content_type="image/png").get_json() == {
        "type": "image/png"
    }


def test_a_body_shorter_than_its_content_length_answers_400(client):
    response = short(client, "/big", b"x" * 100, 1000)
    assert response.status_code == 400
    assert "ended after 100 of the 1000 bytes" in response.get_data(as_text=True)


def test_a_short_body_behind_a_terminating_server_answers_400_too(client):
    response = short(
        client,
        "/big",
        b"x" * 100,
        1000,
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 400
    assert "ended after 100 of the 1000 bytes" in response.get_data(as_text=True)


def test_stream_body_without_the_extension_is_a_clear_error():
    app = Flask("no_bodies")
    app.testing = True

    @app.put("/raw")
    @stream_body()
    def raw() -> object:
        return "unreachable"

    with pytest.raises(RuntimeError, match="needs the Bodies extension"):
        app.test_client().put("/raw", data=b"x")


def test_a_custom_request_class_keeps_its_behaviour():
    class AppRequest(Request):
        greeting = "hello"

    app = Flask("custom_request")
    app.request_class = AppRequest
    Bodies(app)
    assert issubclass(app.request_class, StreamingRequest)
    assert issubclass(app.request_class, AppRequest)
    with app.test_request_context():
        assert request.greeting == "hello"  # type: ignore[attr-defined]


def test_registering_twice_is_refused(app):
    with pytest.raises(RuntimeError, match="already registered"):
        Bodies(app)


def test_a_chunked_body_exactly_as_large_as_the_limit_is_accepted(client):
    assert chunked(client, "/big", b"x" * (4 * KIB)).get_json() == {"size": 4 * KIB}
    over = chunked(client, "/big", b"x" * (4 * KIB + 1))
    assert over.status_code == 413
    assert "4096 bytes (4 KiB)" in over.get_data(as_text=True)


def test_a_plain_flask_app_gets_the_streaming_request_class(app):
    assert app.request_class is StreamingRequest
