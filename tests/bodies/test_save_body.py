"""``save_body``: a body streamed into a file in one atomic step, or no file at
all."""

from __future__ import annotations

import hashlib
import socket
import time
import typing as t

import pytest

from .conftest import chunked
from .conftest import KIB
from .conftest import put
from .conftest import short


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
    assert "ended after 5000 of the 10000 bytes" in response.get_data(as_text=True)
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
    assert "65536 bytes (64 KiB)" in response.get_data(as_text=True)
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
