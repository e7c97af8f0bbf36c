"""Who is logged in: a login session per browser, kept in the database so that
it can be ended from anywhere.

The signed session cookie alone cannot be revoked: a copy made before a logout
or a password reset would keep working for its whole lifetime. Here the cookie
carries only a random token; each request looks the token up, so deleting the
row logs that browser out, wherever a copy of the cookie is.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue

from .extensions import db
from .extensions import streams
from .live import user_channel
from .models import LoginSession
from .models import User

#: The session key holding the login token.
SESSION_KEY = "login"

F = t.TypeVar("F", bound=t.Callable[..., ResponseReturnValue])


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
    return token


def log_in(user: User) -> None:
    """Start a login session for ``user`` in this browser. The old session is
    cleared first, so a session id planted before the login is worth nothing."""
    db.session.execute(
        sa.delete(LoginSession).where(
            LoginSession.user_id == user.id,
            LoginSession.created_at < _oldest_valid(),
        )
    )
    session.clear()
    session[SESSION_KEY] = create_login_session(user)
    user.last_login_at = _now()
    g.user = user


def log_out() -> None:
    """End this browser's login session, here and in every copy of its cookie,
    and the streams of the user's channel opened before."""
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        db.session.execute(
            sa.delete(LoginSession).where(LoginSession.token_hash == _digest(token))
        )
    if g.get("user") is not None:
        _end_private_streams(g.user)
    session.clear()
    g.user = None


def log_out_everywhere(user: User) -> None:
    """End every login session of ``user``, this browser's included."""
    db.session.execute(sa.delete(LoginSession).where(LoginSession.user_id == user.id))
    _end_private_streams(user)
    if g.get("user") is user:
        session.clear()
        g.user = None


def _end_private_streams(user: User) -> None:
    """Streams are authorized when they open: end the open ones of the user's
    channel, in every stream worker, once the logout commits. Those of a login
    that lives on reconnect and are authorized again."""
    streams.end_channel(user_channel(user.id))


def current_user() -> User | None:
    """The user whose live login session this request's cookie names."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str):
        return None
    found = db.session.scalar(
        sa.select(LoginSession).where(
            LoginSession.token_hash == _digest(token),
            LoginSession.created_at >= _oldest_valid(),
        )
    )
    if found is None:
        session.pop(SESSION_KEY, None)  # ended elsewhere, or too old
        return None
    return found.user


def load_user() -> None:
    """Put the logged-in user (or ``None``) on ``g.user`` for this request."""
    g.user = current_user()


def login_required(view: F) -> F:
    """Send anonymous visitors to the login page, and back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args: t.Any, **kwargs: t.Any) -> ResponseReturnValue:
        if g.user is None:
            here = request.full_path if request.query_string else request.path
            return redirect(url_for("accounts.login", next=here))
        return view(*args, **kwargs)

    return t.cast(F, wrapped)
