"""The static folder, app and client the assets tests share."""

from __future__ import annotations

import hashlib
import os
import typing as t

import pytest
from flask import Flask
from flask import url_for
from flask.testing import FlaskClient

from flask_patterns.assets import Assets
from flask_patterns.assets import assets_cli

NEWLINE = b"\n"
IMMUTABLE = "public, max-age=31536000, immutable"
STYLE = b"body { color: #123; }\n"
LOGO = b"<svg xmlns='http://www.w3.org/2000/svg'></svg>\n"


def digest(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()[:12]


class Static:
    """The static folder of a test app, with edits that move the mtime on as a
    real save does (some file systems keep it for a few milliseconds)."""

    def __init__(self, folder: t.Any) -> None:
        self.folder = folder
        self._tick = 1_700_000_000_000_000_000

    def write(self, name: str, data: bytes) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._tick += 1_000_000_000
        os.utime(path, ns=(self._tick, self._tick))


class BufferedClient(FlaskClient):
    """Reads each response to the end and closes it, as a browser does; a file
    response left open would keep its file open."""

    def open(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def static(tmp_path) -> Static:
    static = Static(tmp_path / "static")
    static.write("style.css", STYLE)
    static.write("img/logo.svg", LOGO)
    static.write("app.js", b"console.log('hi');\n" * 20)
    return static


@pytest.fixture
def app(tmp_path, static) -> Flask:
    app = Flask(
        "assets_app",
        static_folder=str(static.folder),
        instance_path=str(tmp_path / "instance"),
    )
    app.config["PATTERNS_ASSETS_ROOT"] = str(tmp_path / "build")
    Assets(app)
    app.cli.add_command(assets_cli)
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def static_url(app: Flask, filename: str) -> str:
    with app.test_request_context():
        return url_for("static", filename=filename)
