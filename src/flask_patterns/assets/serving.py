"""Serving hashed static files: the extension, its URL hashing and the app's
``static`` view."""

from __future__ import annotations

import io
import json
import mimetypes
import os
import typing as t

from flask import abort
from flask import current_app
from flask import Flask
from flask import request
from flask import send_file
from flask import send_from_directory
from flask.wrappers import Response
from werkzeug.security import safe_join

from .._registry import refuse_second
from .._registry import register
from .._registry import state_of
from .digests import Digests
from .naming import hashed_filename
from .naming import split_hashed_filename

__all__ = [
    "ENCODINGS",
    "MANIFEST_VERSION",
    "Assets",
    "AssetsState",
    "assets_state",
    "serve_static",
]

_NAME = "assets"
MANIFEST_VERSION = 1
#: Encodings nginx and the app serve, best first, with the suffix of their copy.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


class AssetsState:
    """What :class:`Assets` keeps per app."""

    def __init__(self, app: Flask) -> None:
        assert app.static_folder is not None
        self.folder = app.static_folder
        self.digests = Digests(app.static_folder, app.static_url_path or "/static")
        self.root = str(app.config["PATTERNS_ASSETS_ROOT"])
        self.manifest_path = str(
            app.config["PATTERNS_ASSETS_MANIFEST"]
            or os.path.join(self.root, "manifest.json")
        )
        self.max_age = int(app.config["PATTERNS_ASSETS_MAX_AGE"])
        self.cache_control = f"public, max-age={self.max_age}, immutable"
        self._paths: dict[str, str] | None = None
        self._loaded = False

    def manifest(self, debug: bool) -> dict[str, str] | None:
        """The built manifest's paths; ``None`` in debug or when none is built."""
        if debug:
            return None
        if not self._loaded:
            self._paths = _load_manifest(self.manifest_path)
            self._loaded = True
        return self._paths

    def forget_manifest(self) -> None:
        """Read the manifest again on next use."""
        self._loaded = False

    def url_name(self, name: str, debug: bool) -> str:
        paths = self.manifest(debug)
        if paths is not None:
            return paths.get(name, name)
        entry = self.digests.get(name)
        return name if entry is None else hashed_filename(name, entry.digest)


def _load_manifest(path: str) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise RuntimeError(f"Cannot read the assets manifest {path}: {error}") from None
    paths = data.get("paths") if isinstance(data, dict) else None
    if not isinstance(paths, dict) or data.get("version") != MANIFEST_VERSION:
        raise RuntimeError(
            f"{path} is not a version {MANIFEST_VERSION} assets manifest:"
            " run 'flask assets build' again."
        )
    return {str(name): str(hashed) for name, hashed in paths.items()}


def assets_state(app: Flask) -> AssetsState:
    """The state :class:`Assets` registered on ``app``."""
    return state_of(app, _NAME, AssetsState, what="Assets")


class Assets:
    """Hashed static file names for an app's static folder.

    :param app: register on this app at once, or later with :meth:`init_app`.

    Configuration: ``PATTERNS_ASSETS_ROOT`` (where ``flask assets build`` writes;
    default ``static`` in the instance folder, outside the package),
    ``PATTERNS_ASSETS_MANIFEST`` (default ``manifest.json`` in that root) and
    ``PATTERNS_ASSETS_MAX_AGE`` (seconds hashed files may be cached, default one
    year). Blueprint static folders are not hashed.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``: hash the static URLs it builds and
        serve the hashed names from its ``static`` endpoint."""
        refuse_second(app, _NAME, what="Assets")
        if not app.has_static_folder or "static" not in app.view_functions:
            raise RuntimeError("Hashed assets need the app's static folder and route.")
        app.config.setdefault(
            "PATTERNS_ASSETS_ROOT", os.path.join(app.instance_path, "static")
        )
        app.config.setdefault("PATTERNS_ASSETS_MANIFEST", None)
        app.config.setdefault("PATTERNS_ASSETS_MAX_AGE", 365 * 24 * 3600)
        register(app, _NAME, AssetsState(app), what="Assets")
        app.url_defaults(_hash_static_url)
        app.view_functions["static"] = serve_static


def _hash_static_url(endpoint: str, values: dict[str, t.Any]) -> None:
    if endpoint != "static" or not isinstance(values.get("filename"), str):
        return
    state = assets_state(current_app)
    values["filename"] = state.url_name(values["filename"], current_app.debug)


def serve_static(filename: str) -> Response:
    """The app's ``static`` view: hashed names immutable, plain names as Flask
    serves them."""
    app = current_app
    state = assets_state(app)
    split = split_hashed_filename(filename)
    if split is not None:
        if state.manifest(app.debug) is not None:
            response = _serve_built(state, filename)
        else:
            response = _serve_computed(state, *split)
        if response is not None:
            response.headers["Cache-Control"] = state.cache_control
            return response
        if not _is_file(state.folder, filename):
            abort(404)
    return app.send_static_file(filename)


def _is_file(folder: str, name: str) -> bool:
    path = safe_join(folder, name)
    return path is not None and os.path.isfile(path)


def _serve_computed(state: AssetsState, name: str, digest: str) -> Response | None:
    entry = state.digests.get(name)
    if entry is None or entry.digest != digest:
        return None
    if entry.content is None:
        return send_from_directory(state.folder, name, max_age=state.max_age)
    return send_file(
        io.BytesIO(entry.content),
        mimetype=_mimetype(name),
        max_age=state.max_age,
        etag=entry.digest,
    )


def _serve_built(state: AssetsState, name: str) -> Response | None:
    if not _is_file(state.root, name):
        return None
    for encoding, suffix in ENCODINGS:
        if request.accept_encodings[encoding] and _is_file(state.root, name + suffix):
            response = send_from_directory(
                state.root,
                name + suffix,
                mimetype=_mimetype(name),
                max_age=state.max_age,
            )
            response.headers["Content-Encoding"] = encoding
            break
    else:
        response = send_from_directory(state.root, name, max_age=state.max_age)
    response.vary.add("Accept-Encoding")
    return response


def _mimetype(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
