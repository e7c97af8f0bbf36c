"""The app, folder and request helpers the body tests share."""

from __future__ import annotations

import io
import typing as t

import pytest
from flask import Flask
from flask import request
from werkzeug.exceptions import UnsupportedMediaType

from flask_patterns.bodies import Bodies
from flask_patterns.bodies import iter_body
from flask_patterns.bodies import save_body
from flask_patterns.bodies import stream_body

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
