"""Hashed URLs and how the app serves them, computed or from a build."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from flask_patterns.assets import Assets
from flask_patterns.assets import build_assets

from .conftest import digest
from .conftest import IMMUTABLE
from .conftest import LOGO
from .conftest import static_url
from .conftest import STYLE


def test_static_urls_carry_the_content_hash_in_the_file_name(app):
    assert static_url(app, "img/logo.svg") == f"/static/img/logo.{digest(LOGO)}.svg"
    assert static_url(app, "style.css") == f"/static/style.{digest(STYLE)}.css"


def test_the_hashed_url_changes_exactly_when_the_bytes_change(app, static):
    first = static_url(app, "img/logo.svg")
    static.write("img/logo.svg", LOGO)  # saved again, same bytes, newer mtime
    assert static_url(app, "img/logo.svg") == first
    static.write("img/logo.svg", LOGO.replace(b"svg'", b"svg' "))
    second = static_url(app, "img/logo.svg")
    assert second != first
    static.write("img/logo.svg", LOGO)
    assert static_url(app, "img/logo.svg") == first


def test_a_hashed_url_is_served_immutable(app, client, static):
    response = client.get(static_url(app, "img/logo.svg"))
    assert response.status_code == 200
    assert response.data == LOGO
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.mimetype == "image/svg+xml"


def test_a_plain_url_is_revalidated_and_never_immutable(client):
    response = client.get("/static/img/logo.svg")
    assert response.status_code == 200
    assert "immutable" not in response.headers["Cache-Control"]
    assert "no-cache" in response.headers["Cache-Control"]
    again = client.get(
        "/static/img/logo.svg", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status_code == 304


def test_a_stale_hash_answers_404_not_the_current_file(app, client, static):
    old = static_url(app, "img/logo.svg")
    static.write("img/logo.svg", b"<svg>changed</svg>")
    assert client.get(old).status_code == 404
    assert client.get(static_url(app, "img/logo.svg")).data == b"<svg>changed</svg>"


def test_unknown_hashed_names_answer_404(client):
    assert client.get("/static/img/logo.0123456789ab.svg").status_code == 404
    assert client.get("/static/missing.0123456789ab.css").status_code == 404


def test_a_file_whose_own_name_looks_hashed_is_served_plainly(client, static):
    static.write("vendor.0123456789ab.js", b"vendor")
    response = client.get("/static/vendor.0123456789ab.js")
    assert response.data == b"vendor"
    assert "immutable" not in response.headers["Cache-Control"]


def test_urls_of_missing_files_stay_plain(app):
    assert static_url(app, "missing.css") == "/static/missing.css"
    assert static_url(app, "../outside.css") == "/static/../outside.css"


def test_in_debug_an_edited_file_gets_a_new_url_without_a_restart(app, static):
    app.debug = True
    build_assets(app)  # a manifest from an earlier build does not pin the URL
    before = static_url(app, "app.js")
    edited = b"console.log('edited');\n"
    static.write("app.js", edited)
    after = static_url(app, "app.js")
    assert after != before
    assert after == f"/static/app.{digest(edited)}.js"


def test_a_broken_manifest_is_a_clear_error(app, tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "build/manifest.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="Cannot read the assets manifest"):
        static_url(app, "style.css")


def test_a_manifest_path_can_be_configured(tmp_path, static):
    app = Flask("custom", static_folder=str(static.folder))
    app.config["PATTERNS_ASSETS_ROOT"] = str(tmp_path / "out")
    app.config["PATTERNS_ASSETS_MANIFEST"] = str(tmp_path / "meta/assets.json")
    Assets(app)
    report = build_assets(app)
    assert report.manifest == str(tmp_path / "meta/assets.json")
    assert json.loads((tmp_path / "meta/assets.json").read_text())["paths"]


def test_registering_twice_is_refused(app):
    with pytest.raises(RuntimeError, match="already registered"):
        Assets(app)


def test_an_app_without_a_static_folder_is_refused():
    with pytest.raises(RuntimeError, match="static folder"):
        Assets(Flask("no_static", static_folder=None))


@pytest.mark.parametrize(
    "content", ["[]", '{"version": 2, "paths": {}}', '{"version": 1}']
)
def test_a_manifest_of_another_shape_is_a_clear_error(app, tmp_path, content):
    (tmp_path / "build").mkdir()
    (tmp_path / "build/manifest.json").write_text(content)
    with pytest.raises(RuntimeError, match="is not a version 1 assets manifest"):
        static_url(app, "style.css")
