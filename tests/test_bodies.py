from __future__ import annotations

import hashlib
import io
import socket
import time
import typing as t

import pytest
from flask import Flask
from flask import request
from flask.wrappers import Request
from werkzeug.exceptions import UnsupportedMediaType

from flask_patterns.bodies import Bodies
from flask_patterns.bodies import iter_body
from flask_patterns.bodies import save_body
from flask_patterns.bodies import stream_body
from flask_patterns.bodies import StreamingRequest

FORM = b"name=ada&colour=green"
URLENCODED = "application/x-www-form-urlencoded"
KIB = 1024


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "uploads"
    path.mkdir()
    return path


@pytest.fixture
def app(folder) -> Flask:
    app = Flask("bodies")
    app.testing = True
    app.config["MAX_CONTENT_LENGTH"] = KIB
    Bodies(app)

    @app.put("/raw")
    @stream_body()
    def raw() -> object:
        return {
            "wanted": request.want_form_data_parsed,
            "form": request.form.to_dict(),
            "files": len(request.files),
            "body": request.stream.read().decode(),
        }

    @app.post("/form")
    def form() -> object:
        return {"wanted": request.want_form_data_parsed, **request.form.to_dict()}

    @app.put("/big")
    @stream_body(max_size=4 * KIB)
    def big() -> object:
        return {"size": sum(len(chunk) for chunk in iter_body(100))}

    @app.put("/image")
    @stream_body(content_types=["image/png", "image/jpeg"])
    def image() -> object:
        return {"type": request.mimetype}

    @app.put("/save")
    @stream_body(max_size=64 * KIB)
    def save() -> object:
        saved = save_body(folder / "upload.bin", chunk_size=KIB)
        return {"size": saved.size, "sha256": saved.sha256}, 201

    @app.put("/save-png")
    @stream_body(max_size=64 * KIB)
    def save_png() -> object:
        def png_only(head: bytes) -> None:
            app.config["HEADS_SEEN"].append(head)
            if not head.startswith(b"\x89PNG\r\n\x1a\n"):
                raise UnsupportedMediaType("The body is not a PNG image.")

        saved = save_body(folder / "upload.png", chunk_size=KIB, check_head=png_only)
        return {"size": saved.size}, 201

    app.config["HEADS_SEEN"] = []

    @app.put("/save-nonempty")
    @stream_body()
    def save_nonempty() -> object:
        save_body(folder / "upload.bin", allow_empty=False)
        return "saved", 201

    return app


@pytest.fixture
def client(app):
    return app.test_client()


def put(client: t.Any, path: str, data: bytes, **kwargs: t.Any) -> t.Any:
    kwargs.setdefault("content_type", "application/octet-stream")
    return client.put(path, data=data, **kwargs)


def chunked(client: t.Any, path: str, data: bytes, **kwargs: t.Any) -> t.Any:
    """A body without Content-Length, from a server that ends the stream itself
    (gunicorn, or the development server for chunked requests)."""
    return client.put(
        path,
        input_stream=io.BytesIO(data),
        content_type="application/octet-stream",
        environ_overrides={"wsgi.input_terminated": True},
        headers={"Transfer-Encoding": "chunked"},
        **kwargs,
    )


def short(client: t.Any, path: str, sent: bytes, announced: int, **kw: t.Any) -> t.Any:
    """A body that ends before the Content-Length it announced (the test client
    would measure a body it is given, so it goes in the environ)."""
    environ = {"wsgi.input": io.BytesIO(sent), "CONTENT_LENGTH": str(announced)}
    environ.update(kw.pop("environ_overrides", {}))
    return client.put(
        path,
        content_type="application/octet-stream",
        environ_overrides=environ,
        **kw,
    )


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


def test_save_body_writes_the_file_and_returns_its_size_and_sha256(client, folder):
    data = bytes(range(256)) * 100
    response = put(client, "/save", data)
    assert response.status_code == 201
    assert response.get_json() == {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert (folder / "upload.bin").read_bytes() == data
    assert [p.name for p in folder.iterdir()] == ["upload.bin"]
    assert (folder / "upload.bin").stat().st_mode & 0o777 == 0o644


def test_a_truncated_body_leaves_no_file_and_keeps_the_previous_one(client, folder):
    (folder / "upload.bin").write_bytes(b"previous")
    response = short(client, "/save", b"x" * 5000, 10000)
    assert response.status_code == 400
    assert [p.name for p in folder.iterdir()] == ["upload.bin"]
    assert (folder / "upload.bin").read_bytes() == b"previous"


def test_an_empty_body_can_be_refused_without_touching_the_file(client, folder):
    (folder / "upload.bin").write_bytes(b"previous")
    response = put(client, "/save-nonempty", b"")
    assert response.status_code == 400
    assert "The request body is empty." in response.get_data(as_text=True)
    assert [p.name for p in folder.iterdir()] == ["upload.bin"]
    assert (folder / "upload.bin").read_bytes() == b"previous"


PNG_BODY = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def test_a_head_check_sees_the_first_bytes_once_and_lets_a_good_body_through(
    app, client, folder
):
    response = put(client, "/save-png", PNG_BODY)
    assert response.status_code == 201
    assert app.config["HEADS_SEEN"] == [PNG_BODY[:64]]
    assert (folder / "upload.png").read_bytes() == PNG_BODY


def test_a_body_whose_head_is_refused_leaves_no_file_and_keeps_the_old_one(
    app, client, folder
):
    (folder / "upload.png").write_bytes(PNG_BODY)
    html = b"<html><script>alert(document.cookie)</script></html>" * 500
    response = put(client, "/save-png", html, content_type="image/png")
    assert response.status_code == 415
    assert "The body is not a PNG image." in response.get_data(as_text=True)
    assert app.config["HEADS_SEEN"] == [html[:64]]
    assert [p.name for p in folder.iterdir()] == ["upload.png"]
    assert (folder / "upload.png").read_bytes() == PNG_BODY


def test_a_body_shorter_than_the_head_is_checked_whole(app, client, folder):
    response = put(client, "/save-png", b"GIF89a")
    assert response.status_code == 415
    assert app.config["HEADS_SEEN"] == [b"GIF89a"]
    assert list(folder.iterdir()) == []


def test_a_body_over_the_limit_leaves_no_file(client, folder):
    response = chunked(client, "/save", b"x" * (65 * KIB))
    assert response.status_code == 413
    assert list(folder.iterdir()) == []


def test_a_connection_closed_mid_upload_leaves_no_file(app, folder, live_server):
    server = live_server(app)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            b"PUT /save HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: 60000\r\n\r\n" + b"x" * 20000
        )
        wait_for(lambda: any(folder.iterdir()), "the upload to start")
    wait_for(lambda: not any(folder.iterdir()), "the partial file to go")


def test_a_real_chunked_upload_is_saved(app, folder, live_server):
    import http.client

    server = live_server(app)
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"))
    body = (b"y" * 1000 for _ in range(50))
    connection.request(
        "PUT",
        "/save",
        body=body,
        headers={"Content-Type": "application/octet-stream"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert response.status == 201
    assert (folder / "upload.bin").read_bytes() == b"y" * 50000
    connection.close()


def wait_for(condition: t.Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what}.")
        time.sleep(0.01)


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
    assert chunked(client, "/big", b"x" * (4 * KIB + 1)).status_code == 413


def test_a_plain_flask_app_gets_the_streaming_request_class(app):
    assert app.request_class is StreamingRequest
