"""How the storefront answers errors: an HTML page in the shop's layout for
pages, and ``application/problem+json`` (RFC 9457) for everything under
``/api/``.

One app-level handler takes every :class:`~werkzeug.exceptions.HTTPException`,
the 500 Flask makes of an unhandled exception included, and decides by the
request's path: a 404 of an unknown ``/api/`` address matched no blueprint, so a
blueprint's handler would never see it. The headers the exception carries
(``Allow``, ``Retry-After``, ``WWW-Authenticate``) stay on the answer. A 500
never shows what went wrong inside: Flask has logged the exception already.
"""

from __future__ import annotations

import math
import time
import typing as t

import psycopg
import sqlalchemy as sa
from flask import current_app
from flask import Flask
from flask import render_template
from flask import request
from flask import Response
from flask import url_for
from flask.typing import ResponseReturnValue
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import ServiceUnavailable

from flask_patterns.logs import current_request_id

from .extensions import limiter

#: What a 500 says, on a page and in the API, whatever the exception was.
SERVER_ERROR_DETAIL = (
    "Something went wrong on our side. The error was logged; please try again."
)
#: What a 503 of the database says, on a page and in the API.
DATABASE_UNAVAILABLE = "The shop cannot reach its data right now, so nothing was done."
#: Seconds a client is asked to wait when the database did not answer.
DATABASE_RETRY_AFTER = 30
PROBLEM_JSON = "application/problem+json"
_PAGE = "errors/error.html"
_PLAIN_PAGE = "errors/plain.html"


def init_app(app: Flask) -> None:
    """Answer every HTTP error of ``app`` with a page or a problem document,
    and a database that cannot be reached as a 503 to try again."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(sa.exc.OperationalError, handle_database_error)


def handle_database_error(error: sa.exc.OperationalError) -> ResponseReturnValue:
    """A PostgreSQL that refuses, drops or does not answer the connection (or
    shuts down, or is in recovery) is a 503 with ``Retry-After``: the request
    did nothing and may be tried again. Any other database error stays a 500.
    Either is logged with its traceback, and neither shows what it said."""
    if not isinstance(error.orig, psycopg.OperationalError):
        raise error  # Flask answers it as the 500 it is, and logs it
    current_app.logger.error(
        "The database is unavailable: %s", error.orig, exc_info=error
    )
    return handle_http_error(
        ServiceUnavailable(DATABASE_UNAVAILABLE, retry_after=DATABASE_RETRY_AFTER)
    )


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to the JSON API, whose errors are JSON."""
    return path == "/api" or path.startswith("/api/")


def handle_http_error(error: HTTPException) -> ResponseReturnValue:
    """The answer to ``error``: problem+json under ``/api/``, a page elsewhere,
    with the exception's own headers."""
    if error.response is not None:
        return error.response  # built on purpose by the app
    code = error.code or 500
    if code == 500 and getattr(error, "original_exception", None) is None:
        # abort(500): nothing was logged, and the page says it was.
        current_app.logger.error("500 answered: %s", error.description)
    headers = _headers_of(error)
    if code == 429 and "Retry-After" not in headers:
        seconds = _seconds_until_reset(error)
        if seconds is not None:
            headers["Retry-After"] = str(seconds)
    if is_api_path(request.path):
        return _problem(error, code, headers)
    return _page(error, code, headers)


def _headers_of(error: HTTPException) -> Headers:
    """The exception's headers but its HTML ``Content-Type``."""
    headers = Headers(error.get_headers(request.environ))
    headers.remove("Content-Type")
    return headers


def _seconds_until_reset(error: HTTPException) -> int | None:
    """For a Flask-Limiter breach, how many seconds until the limit lets the
    client in again; ``None`` when that is not known."""
    if not isinstance(error, RateLimitExceeded):
        return None
    try:
        current = limiter.current_limit
        if current is None:
            return None
        return max(1, math.ceil(current.reset_at - time.time()))
    except Exception:  # the storage does not answer: say nothing rather than fail
        return None


def _detail(error: HTTPException, code: int) -> str:
    return SERVER_ERROR_DETAIL if code == 500 else str(error.description)


def _problem(error: HTTPException, code: int, headers: Headers) -> Response:
    """An RFC 9457 problem document of ``error``."""
    body = {
        "type": "about:blank",
        "title": error.name,
        "status": code,
        "detail": _detail(error, code),
    }
    return current_app.response_class(
        current_app.json.dumps(body), code, headers, mimetype=PROBLEM_JSON
    )


def _specific_detail(error: HTTPException, code: int) -> str | None:
    """What the app said of this error, when it said more than Werkzeug's
    generic sentence (which the page replaces with its own)."""
    if isinstance(error, RateLimitExceeded):
        limit = str(error.limit.limit)
        said = str(error.description)
        return f"The limit is {limit}." if said == limit else said
    if code == 500 or error.description == type(error).description:
        return None
    return str(error.description)


def _methods(allow: str | None) -> str | None:
    """The methods of an ``Allow`` header a person would recognise: "POST"."""
    if allow is None:
        return None
    methods = [m.strip() for m in allow.split(",")]
    shown = [m for m in methods if m and m not in ("HEAD", "OPTIONS")]
    return ", ".join(shown) or None


def _when(retry_after: str | None) -> str | None:
    """``Retry-After`` (seconds, or an HTTP date) as words: "in 42 seconds"."""
    if retry_after is None:
        return None
    if not retry_after.isdigit():
        return f"after {retry_after}"
    seconds = int(retry_after)
    if seconds < 120:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    # Flask-Limiter's windows end a second late: 3,601 s is 60 minutes.
    minutes = math.ceil((seconds - 1) / 60)
    if minutes < 90:
        return f"in {minutes} minutes"
    hours = round(minutes / 60)
    return f"in about {hours} hours"


def _url(endpoint: str, **values: t.Any) -> str | None:
    """``url_for``, or ``None`` when no URL can be built: a request for an
    untrusted ``Host`` fails before routing, so it has no URL adapter."""
    try:
        return url_for(endpoint, **values)
    except Exception:
        return None


def _page(error: HTTPException, code: int, headers: Headers) -> Response:
    """The error page in the shop's layout; a plain one if that cannot be
    rendered (the layout reads the user and settings, which may be what broke)."""
    home = _url("shop.index")
    context: dict[str, t.Any] = {
        "code": code,
        "name": error.name,
        "kind": "csrf" if isinstance(error, CSRFError) else code,
        "detail": _specific_detail(error, code),
        "generic": _detail(error, code),
        "method": request.method,
        "allowed": _methods(headers.get("Allow")),
        "retry_after": _when(headers.get("Retry-After")),
        "request_id": current_request_id() if code == 500 else None,
        "home": home or f"{request.script_root}/",
        "login_url": _url("accounts.login"),
        "stylesheet": _url("static", filename="style.css"),
    }
    html = None
    if home is not None:  # the layout builds URLs everywhere
        try:
            html = render_template(_PAGE, **context)
        except Exception:
            current_app.logger.exception(
                "The %s error page could not be rendered; sent the plain one", code
            )
    if html is None:
        # Straight from the environment: no context processor runs.
        html = current_app.jinja_env.get_template(_PLAIN_PAGE).render(**context)
    return current_app.response_class(html, code, headers, mimetype="text/html")
