"""The storefront's defences that every request and response goes through, set
in one place: trusted hosts, cookie flags, security headers, and the refusal of
input that would otherwise reach the database as an error."""

from __future__ import annotations

import typing as t
import unicodedata

from flask import abort
from flask import Flask
from flask import request
from flask import Response
from werkzeug.routing import IntegerConverter
from werkzeug.routing import Map
from werkzeug.routing import ValidationError

from .links import public_origin

#: The largest id an ``Integer`` primary key holds on PostgreSQL (and SQLite).
MAX_ID = 2**31 - 1

#: No script, style, font, image or connection from anywhere but this origin,
#: and nothing inline: an injected ``<script>`` does not run.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
HSTS = "max-age=31536000"
#: What a response that says nothing of caching gets: nothing the app renders
#: may be kept by a shared cache or on disk (pages carry the user's orders,
#: name and CSRF token).
NO_STORE = "private, no-store"

_ALLOWED_CONTROLS = frozenset("\t\n\r")
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` that matches only ids a database integer column holds:
    ``/products/99999999999999999999`` is a 404, not an overflow error. Only
    ASCII digits: Werkzeug's ``\\d`` also takes the digits of other scripts
    (U+0661, an Arabic-Indic one), which would give every product a second
    address."""

    regex = r"[0-9]+"

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = MAX_ID,
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)

    def to_python(self, value: str) -> t.Any:
        # Python refuses to parse integers of more than 4,300 digits.
        if len(value) > len(str(MAX_ID)):
            raise ValidationError()
        return super().to_python(value)


def init_app(app: Flask) -> None:
    """Install every defence on ``app``; call it before the blueprints are
    registered (their routes need the id converter)."""
    origin = public_origin(app)
    app.url_map.converters["int"] = DatabaseIdConverter
    if app.config.get("TRUSTED_HOSTS") is None:
        app.config["TRUSTED_HOSTS"] = origin.trusted_hosts()
    app.config.update(
        PREFERRED_URL_SCHEME=origin.scheme,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=origin.is_https,
    )
    app.before_request(refuse_control_characters)
    app.after_request(add_security_headers)


def _has_controls(text: str) -> bool:
    return any(
        unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS
        for char in text
    )


def refuse_control_characters() -> None:
    """400 for a query or form field holding NUL or another control character
    (tab and line breaks excepted). PostgreSQL refuses NUL in text, which would
    otherwise be a 500 wherever the value reaches a query."""
    fields = list(request.args.items(multi=True))
    if request.mimetype in _FORMS:
        # Werkzeug drops a body that is not UTF-8 without a word; the form
        # would then be refused for a CSRF token it seems not to carry.
        parsed = request.want_form_data_parsed  # not where a view streams it
        read = request.form or request.files
        if parsed and request.content_length and not read:
            abort(400, "The form could not be read: its fields must be UTF-8 text.")
        fields += request.form.items(multi=True)
    for name, value in fields:
        if _has_controls(name) or _has_controls(value):
            abort(
                400,
                description=(
                    "Form and query fields must not contain control characters"
                    f" (field {name!r})."
                ),
            )


def add_security_headers(response: Response) -> Response:
    """The security headers, without overriding what a view set itself."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if public_origin().is_https:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = NO_STORE
    return response
