"""Stylesheets hashed after their references were rewritten."""

from __future__ import annotations

import re

from .conftest import digest
from .conftest import IMMUTABLE
from .conftest import LOGO
from .conftest import NEWLINE
from .conftest import static_url

SHEET = b"""\
@import "base.css";
@import url('img/logo.svg?v=1#mark');
/* url(img/logo.svg) in a comment stays */
.a { background: url(img/logo.svg); }
.b { background: url( "/static/img/logo.svg" ) }
.c { background: url(data:image/png;base64,AAAA); }
.d { background: url(https://cdn.example/x.png); }
.e { background: url(missing.png); }
.f { fill: url(#gradient); }
.g { background: url(/elsewhere/logo.svg); }
"""


def test_stylesheet_references_point_at_hashed_names(app, client, static):
    static.write("base.css", b"html { margin: 0 }\n")
    static.write("site.css", SHEET)
    logo = f"logo.{digest(LOGO)}.svg"
    served = client.get(static_url(app, "site.css")).get_data(as_text=True)
    base = f"base.{digest(b'html { margin: 0 }' + NEWLINE)}.css"
    assert f'@import "{base}";' in served
    assert f"@import url('img/{logo}?v=1#mark');" in served
    assert "/* url(img/logo.svg) in a comment stays */" in served
    assert f".a {{ background: url(img/{logo}); }}" in served
    assert f'url( "/static/img/{logo}" )' in served
    for kept in (
        "url(data:image/png;base64,AAAA)",
        "url(https://cdn.example/x.png)",
        "url(missing.png)",
        "url(#gradient)",
        "url(/elsewhere/logo.svg)",
    ):
        assert kept in served


def test_the_hash_of_a_stylesheet_is_the_hash_of_its_rewritten_content(
    app, client, static
):
    static.write("site.css", b".a { background: url(img/logo.svg); }\n")
    url = static_url(app, "site.css")
    response = client.get(url)
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.mimetype == "text/css"
    assert url == f"/static/site.{digest(response.data)}.css"
    assert b"url(img/logo.svg)" not in response.data


def test_a_stylesheet_gets_a_new_url_when_a_file_it_refers_to_changes(app, static):
    static.write("site.css", b".a { background: url(img/logo.svg); }\n")
    before = static_url(app, "site.css")
    static.write("img/logo.svg", b"<svg>new</svg>")
    assert static_url(app, "site.css") != before


def test_relative_references_resolve_from_the_stylesheets_folder(app, client, static):
    static.write("css/deep.css", b".a { background: url(../img/logo.svg); }\n")
    served = client.get(static_url(app, "css/deep.css")).data
    assert f"url(../img/logo.{digest(LOGO)}.svg)".encode() in served


def test_stylesheets_importing_each_other_do_not_loop(app, client, static):
    static.write("a.css", b'@import "b.css";\n')
    static.write("b.css", b'@import "a.css";\n')
    response = client.get(static_url(app, "a.css"))
    assert response.status_code == 200
    assert re.search(rb'@import "b\.[0-9a-f]{12}\.css";', response.data)


def test_plain_stylesheet_urls_serve_the_file_as_written(client, static):
    static.write("site.css", b".a { background: url(img/logo.svg); }\n")
    assert client.get("/static/site.css").data == (
        b".a { background: url(img/logo.svg); }\n"
    )
