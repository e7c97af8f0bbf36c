"""The build for nginx: hashed and compressed copies, the manifest."""

from __future__ import annotations

import gzip
import json

import brotli
from flask import Flask

from flask_patterns.assets import Assets
from flask_patterns.assets import assets_cli
from flask_patterns.assets import build_assets

from .conftest import digest
from .conftest import IMMUTABLE
from .conftest import LOGO
from .conftest import static_url

# The build and the manifest.


def test_build_writes_the_manifest_and_the_hashed_and_compressed_copies(app, tmp_path):
    report = build_assets(app)
    root = tmp_path / "build"
    manifest = json.loads((root / "manifest.json").read_text())
    hashed_logo = f"img/logo.{digest(LOGO)}.svg"
    assert manifest["version"] == 1
    assert manifest["paths"]["img/logo.svg"] == hashed_logo
    assert set(manifest["paths"]) == {"style.css", "img/logo.svg", "app.js"}
    assert (root / hashed_logo).read_bytes() == LOGO
    assert (root / "img/logo.svg").read_bytes() == LOGO
    js = (root / manifest["paths"]["app.js"]).read_bytes()
    assert gzip.decompress((root / f"{manifest['paths']['app.js']}.gz").read_bytes())
    assert (
        brotli.decompress((root / f"{manifest['paths']['app.js']}.br").read_bytes())
        == js
    )
    assert report.files == 3
    assert report.brotli


def test_built_stylesheets_hold_the_rewritten_references(app, static, tmp_path):
    static.write("site.css", b".a { background: url(img/logo.svg); }\n")
    build_assets(app)
    manifest = json.loads((tmp_path / "build/manifest.json").read_text())
    built = (tmp_path / "build" / manifest["paths"]["site.css"]).read_bytes()
    assert f"url(img/logo.{digest(LOGO)}.svg)".encode() in built
    assert manifest["paths"]["site.css"] == f"site.{digest(built)}.css"


def test_after_a_build_the_app_serves_the_manifests_names(app, client, static):
    build_assets(app)
    url = static_url(app, "img/logo.svg")
    static.write("img/logo.svg", b"<svg>edited after the build</svg>")
    assert static_url(app, "img/logo.svg") == url  # rebuild to publish edits
    response = client.get(url)
    assert response.data == LOGO
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers["Vary"] == "Accept-Encoding"


def test_the_built_app_serves_precompressed_copies_by_accept_encoding(app, client):
    build_assets(app)
    url = static_url(app, "app.js")
    plain = client.get(url)
    gzipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    brotlied = client.get(url, headers={"Accept-Encoding": "gzip, br"})
    assert "Content-Encoding" not in plain.headers
    assert gzipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gzipped.data) == plain.data
    assert brotlied.headers["Content-Encoding"] == "br"
    assert brotli.decompress(brotlied.data) == plain.data
    assert brotlied.mimetype == "text/javascript"
    assert brotlied.headers["Cache-Control"] == IMMUTABLE


def test_the_built_app_answers_404_for_hashes_it_never_built(app, client):
    build_assets(app)
    assert client.get("/static/img/logo.0123456789ab.svg").status_code == 404


def test_hashed_copies_of_earlier_builds_stay_for_cached_pages(app, client, static):
    build_assets(app)
    old = static_url(app, "img/logo.svg")
    static.write("img/logo.svg", b"<svg>v2</svg>")
    build_assets(app)
    assert static_url(app, "img/logo.svg") != old
    assert client.get(old).data == LOGO


def test_the_cli_builds_and_reports(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["assets", "build"])
    assert result.exit_code == 0, result.output
    assert "Hashed 3 files" in result.output
    assert (tmp_path / "build/manifest.json").exists()


def test_a_build_root_inside_the_static_folder_is_refused(static):
    app = Flask("in_place", static_folder=str(static.folder))
    app.config["PATTERNS_ASSETS_ROOT"] = str(static.folder / "build")
    Assets(app)
    app.cli.add_command(assets_cli)
    result = app.test_cli_runner().invoke(args=["assets", "build"])
    assert result.exit_code == 1
    assert "must not contain one another" in result.output


def test_without_brotli_the_build_writes_gzip_only_and_says_so(
    app, tmp_path, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "brotli", None)  # import brotli fails
    result = app.test_cli_runner().invoke(args=["assets", "build"])
    assert result.exit_code == 0
    assert "brotli package is not installed" in result.output
    assert list((tmp_path / "build").rglob("*.br")) == []
    assert list((tmp_path / "build").rglob("*.gz"))
