"""Building hashed static files for nginx: plain and hashed copies, gzip and
brotli siblings, and the manifest."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import posixpath
import tempfile
import typing as t
from dataclasses import dataclass

import click
from flask import current_app
from flask import Flask
from flask.cli import AppGroup

from .digests import Digests
from .naming import content_digest
from .naming import hashed_filename
from .serving import assets_state
from .serving import MANIFEST_VERSION

__all__ = ["BuildReport", "assets_cli", "build_assets", "build_command"]

#: Text formats worth a gzip and a brotli copy; images and fonts are compressed.
_COMPRESSIBLE = frozenset(
    {".css", ".js", ".mjs", ".json", ".map", ".svg", ".txt", ".html", ".xml", ".ico"}
)


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_assets` wrote."""

    root: str
    manifest: str
    files: int
    #: Copies (plain, hashed, gzip, brotli) written this time; existing hashed
    #: copies are left alone, since their name says what they hold.
    written: int
    brotli: bool


def _brotli() -> t.Any:
    try:
        return importlib.import_module("brotli")
    except ImportError:
        return None


def _source_names(folder: str) -> list[str]:
    names = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        relative = os.path.relpath(directory, folder)
        for file in sorted(files):
            if not file.startswith("."):
                names.append(posixpath.normpath(posixpath.join(relative, file)))
    return names


def _write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that
    nginx never serves half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class _Writer:
    def __init__(self, root: str) -> None:
        self.root = root
        self.brotli = _brotli()
        self.written = 0

    def write_with_compressed(
        self, name: str, data: bytes, *, keep_existing: bool
    ) -> None:
        """Write ``name`` and its gzip and brotli siblings under the root."""
        path = os.path.join(self.root, *name.split("/"))
        if keep_existing and os.path.exists(path):
            return
        _write(path, data)
        self.written += 1
        if posixpath.splitext(name)[1].lower() not in _COMPRESSIBLE:
            return
        self._compressed(path + ".gz", gzip.compress(data, 9, mtime=0), len(data))
        if self.brotli is not None:
            self._compressed(path + ".br", self.brotli.compress(data), len(data))

    def _compressed(self, path: str, data: bytes, size: int) -> None:
        if len(data) < size * 0.95:  # not worth a copy otherwise
            _write(path, data)
            self.written += 1


def build_assets(app: Flask) -> BuildReport:
    """Write every file of the static folder into ``PATTERNS_ASSETS_ROOT`` under
    its plain and its hashed name, with gzip and brotli copies of text files,
    then the manifest. Hashed copies of earlier builds stay, so pages cached
    before a deploy still find their assets."""
    state = assets_state(app)
    folder, root = os.path.realpath(state.folder), os.path.realpath(state.root)
    if os.path.commonpath([folder, root]) in (folder, root):
        raise RuntimeError(
            f"PATTERNS_ASSETS_ROOT ({root}) and the static folder ({folder}) must"
            " not contain one another."
        )
    digests = Digests(state.folder, state.digests.url_prefix)
    writer = _Writer(state.root)
    paths = {}
    for name in _source_names(state.folder):
        entry = digests.get(name)
        if entry is None:
            continue
        with open(os.path.join(state.folder, *name.split("/")), "rb") as file:
            data = file.read()
        if entry.content is None and content_digest(data) != entry.digest:
            raise RuntimeError(f"{name} changed during the build; run it again.")
        paths[name] = hashed_filename(name, entry.digest)
        writer.write_with_compressed(name, data, keep_existing=False)
        writer.write_with_compressed(
            paths[name], entry.content or data, keep_existing=True
        )
    manifest = json.dumps({"version": MANIFEST_VERSION, "paths": paths}, indent=2)
    _write(state.manifest_path, manifest.encode("utf-8") + b"\n")
    state.forget_manifest()  # this process serves the new build from now on
    return BuildReport(
        root=state.root,
        manifest=state.manifest_path,
        files=len(paths),
        written=writer.written,
        brotli=writer.brotli is not None,
    )


assets_cli = AppGroup("assets", help="Hashed static files.")


@assets_cli.command("build")
def build_command() -> None:
    """Write the hashed static files and their manifest for nginx and the app."""
    try:
        report = build_assets(current_app._get_current_object())  # type: ignore[attr-defined]
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Hashed {report.files} files into {report.root} ({report.written} copies"
        f" written); manifest: {report.manifest}."
    )
    if not report.brotli:
        click.echo(
            "The brotli package is not installed: wrote gzip copies only.", err=True
        )
