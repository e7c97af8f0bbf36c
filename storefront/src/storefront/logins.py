"""Who is logged in: Flask-Login's ``current_user``, from a login session per
browser kept in the database so that it can be ended from anywhere.

The signed session cookie alone cannot be revoked: a copy made before a logout
or a password reset would keep working for its whole lifetime. Here the id
Flask-Login keeps in the cookie is a random token of one login session (what
Flask-Login calls an alternative token); each request looks the token up, so
deleting the row logs that browser out, wherever a copy of the cookie is.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import typing as t

import flask_login
import sqlalchemy as sa
from flask import abort
from flask import current_app
from flask import flash
from flask import Flask
from flask import redirect
from flask import request
from flask import session
from werkzeug.wrappers import Response

from .extensions import db
from .extensions import login_manager
from .extensions import streams
from .forms import ButtonForm
from .live import user_channel
from .models import LoginSession
from .models import User

#: The session key Flask-Login keeps the login token under.
SESSION_KEY = "_user_id"

#: The view of ``current_user``, typed: the logged-in :class:`User`, or an
#: anonymous visitor (``is_authenticated`` false).
current_user: User = flask_login.current_user

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def login_required(view: F) -> F:
    """Flask-Login's ``login_required``: anonymous visitors go to the login
    form, and come back here afterwards."""
    return t.cast(F, flask_login.login_required(view))


def staff_only(refusal: str) -> t.Callable[[F], F]:
    """A view for the shop's staff: any other logged-in user gets a 403 that
    says ``refusal``. It goes under a login check (:func:`login_required`, or
    the API's own), which deals with anonymous visitors first."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: t.Any, **kwargs: t.Any) -> t.Any:
            if not current_user.is_staff:
                abort(403, refusal)
            return view(*args, **kwargs)

        return t.cast(F, wrapped)

    return decorate


def logged_in_user() -> User:
    """The logged-in user itself, not the ``current_user`` proxy: for code that
    hands the user on, to :func:`log_in` say."""
    user = flask_login.current_user._get_current_object()
    if not isinstance(user, User):
        raise RuntimeError("No user is logged in.")
    return user


def init_app(app: Flask) -> None:
    """Set up Flask-Login on ``app``: anonymous visitors of a page that needs a
    login go to the login form, and back afterwards (``?next=``)."""
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Log in to see that page."
    login_manager.login_message_category = "info"
    # What ends a login is the server-side row, not the client's address: a
    # phone that changes networks stays logged in.
    login_manager.session_protection = None
    login_manager.unauthorized_handler(_to_the_login_form)
    app.add_template_global(_button_form, "button_form")


def _to_the_login_form() -> Response:
    """Send a visitor who must log in to the login form, and back afterwards:
    to this page or, for a form sent once the login had ended (elsewhere, or
    with its lifetime), to the page the form was on. The address a form is sent
    to answers POST only: the login would land on a 405 page."""
    flash(login_manager.login_message, login_manager.login_message_category)
    if request.method in ("GET", "HEAD"):
        return redirect(flask_login.login_url("accounts.login", request.url))
    # login_url keeps the path and query; the login checks ``next`` as ever.
    return redirect(flask_login.login_url("accounts.login", request.referrer), 303)


def _button_form() -> ButtonForm:
    """A form that is only a button, such as "Log out", for templates."""
    return ButtonForm(formdata=None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _oldest_valid() -> dt.datetime:
    return _now() - current_app.permanent_session_lifetime


def create_login_session(user: User) -> str:
    """Store a new login session of ``user`` and return its token (tests use
    this to log a client in without the form)."""
    token = secrets.token_urlsafe(32)
    db.session.add(LoginSession(user_id=user.id, token_hash=_digest(token)))
    user.login_token = token
    return token


def load_user(token: object) -> User | None:
    """The user whose live login session ``token`` names, or ``None`` (ended
    elsewhere, older than the session lifetime, or no token at all: a cookie
    signed with this key by other code may hold anything)."""
    if not isinstance(token, str):
        return None
    found = db.session.scalar(
        sa.select(LoginSession).where(
            LoginSession.token_hash == _digest(token),
            LoginSession.created_at >= _oldest_valid(),
        )
    )
    if found is None:
        return None
    found.user.login_token = token
    return found.user


def log_in(user: User) -> None:
    """Start a login session for ``user`` in this browser. The browser's
    login before ends first, as a logout would: whoever did not log out of a
    shared computer is logged out wherever a copy of their cookie is. That
    also clears the session, so a session id planted before is worth nothing."""
    log_out()
    db.session.execute(
        sa.delete(LoginSession).where(
            LoginSession.user_id == user.id,
            LoginSession.created_at < _oldest_valid(),
        )
    )
    create_login_session(user)
    if not flask_login.login_user(user):
        raise ValueError(f"User {user.id} is not active and cannot log in.")
    user.last_login_at = _now()


def log_out() -> None:
    """End this browser's login session, here and in every copy of its cookie,
    and the streams of the user's channel opened before."""
    # Who it is, before the row goes: Flask-Login loads the user lazily, and
    # after the delete the token would name no one.
    user = logged_in_user() if current_user.is_authenticated else None
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        db.session.execute(
            sa.delete(LoginSession).where(LoginSession.token_hash == _digest(token))
        )
    if user is not None:
        _end_private_streams(user)
    flask_login.logout_user()
    session.clear()


def log_out_everywhere(user: User) -> None:
    """End every login session of ``user``, this browser's included."""
    mine = current_user.is_authenticated and current_user.id == user.id
    db.session.execute(sa.delete(LoginSession).where(LoginSession.user_id == user.id))
    _end_private_streams(user)
    if mine:
        flask_login.logout_user()
        session.clear()


def _end_private_streams(user: User) -> None:
    """Streams are authorized when they open: end the open ones of the user's
    channel, in every stream worker, once the logout commits. Those of a login
    that lives on reconnect and are authorized again."""
    streams.end_channel(user_channel(user.id))
