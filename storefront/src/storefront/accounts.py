"""Accounts: sign up with an address, activate through a signed link (where the
password is chosen), log in and out, reset a forgotten password.

Every form that takes an address answers the same, and does the same work (one
mail, one password hash), whether or not the address has an account, so that
none of them tells a stranger who shops here. The password is chosen on the
activation page, by whoever can read the mail: someone who signs up with your
address first gets no way into the account you then activate.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from flask_patterns.redirects import redirect_back
from flask_patterns.tokens import dumps
from flask_patterns.tokens import loads
from flask_patterns.tokens import TokenExpired
from flask_patterns.tokens import TokenInvalid

from .extensions import db
from .extensions import limiter
from .links import public_origin
from .links import public_url
from .logins import load_user
from .logins import log_in
from .logins import log_out
from .logins import log_out_everywhere
from .mail import send_mail
from .models import User
from .passwords import hash_password
from .passwords import password_problem
from .passwords import verify_password

bp = Blueprint("accounts", __name__)
bp.before_app_request(load_user)

ACTIVATE = "activate"
RESET = "reset-password"
MAIL_SENT = "We sent a mail to {email}: follow its link to go on."
#: Mail to one address from sign-up, reset and "send the link again" together,
#: whoever asks: the per-sender limits alone let one client mail a stranger
#: twenty times a minute.
MAILS_PER_ADDRESS = "5 per hour"


def _recipient_key() -> str:
    return hashlib.sha256(_email().encode("utf-8", "replace")).hexdigest()


_mail_to_address = limiter.shared_limit(
    MAILS_PER_ADDRESS,
    scope="mail-to-address",
    key_func=_recipient_key,
    methods=["POST"],
    error_message="Too many mails to this address; try again in an hour.",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _find(email: str) -> User | None:
    return db.session.scalar(sa.select(User).where(User.email == email))


def _email() -> str:
    return request.form.get("email", "").strip().lower()


def _email_problem(email: str) -> str | None:
    """Why ``email`` is not an address to mail, or ``None``. Plain string
    checks, the length first: a backtracking pattern took seconds of a worker
    on a 100 kB address."""
    local, _, domain = email.partition("@")
    valid = (
        len(email) <= 254
        and 1 <= len(local) <= 64
        and "@" not in domain
        and "." in domain[1:-1]
        and not any(char.isspace() for char in email)
    )
    return None if valid else "Enter a valid e-mail address."


def _refuse(template: str, message: str, **context: object) -> ResponseReturnValue:
    flash(message, "error")
    return render_template(template, **context), 400


def _mail_next_step(email: str, user: User | None) -> None:
    """The one mail an address gets from sign-up or "send the link again":
    an activation link for an account waiting for it, a reminder for an active
    one, or word that there is no account. One mail whatever the case, so the
    work done does not tell them apart."""
    if user is None:
        _mail_no_account(email)
    elif user.is_active:
        send_mail(
            email,
            "already_registered",
            login=public_url("accounts.login"),
            reset=public_url("accounts.reset_request"),
        )
    else:
        _send_activation(user)


def _mail_no_account(email: str) -> None:
    send_mail(email, "no_account", signup=public_url("accounts.signup"))


def _send_activation(user: User) -> None:
    token = dumps(ACTIVATE, user.id, fingerprint=user.activation_fingerprint)
    send_mail(
        user.email,
        "activate",
        link=public_url("accounts.activate", token=token),
        days=current_app.config["ACTIVATION_MAX_AGE"] // 86400,
    )


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
@_mail_to_address
def signup() -> ResponseReturnValue:
    """Sign up with an address; the password comes with the activation."""
    if request.method == "GET":
        return render_template("accounts/signup.html")
    email = _email()
    problem = _email_problem(email)
    if problem is not None:
        return _refuse("accounts/signup.html", problem, email=email)
    _mail_next_step(email, _find(email) or _create_user(email))
    flash(MAIL_SENT.format(email=email))
    return redirect(url_for("accounts.login"))


def _create_user(email: str) -> User:
    """A new account for ``email``, or the one a concurrent sign-up with the same
    address committed first (the insert then conflicts and is undone alone)."""
    try:
        with db.savepoint() as session:
            user = User(email=email)
            session.add(user)
            session.flush()
            return user
    except sa.exc.IntegrityError:
        existing = _find(email)
        if existing is None:
            raise
        return existing


def _activation_state(user_id: object) -> str:
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    return user.activation_fingerprint if user is not None else "missing"


def _load_link(purpose: str, token: str) -> User | str:
    """The user a link of ``purpose`` stands for, or why it does not work:
    ``"expired"`` or ``"invalid"``."""
    if purpose == ACTIVATE:
        max_age, state = current_app.config["ACTIVATION_MAX_AGE"], _activation_state
    else:
        max_age, state = current_app.config["RESET_MAX_AGE"], _reset_state
    try:
        user_id = loads(purpose, token, max_age=max_age, fingerprint=state)
    except TokenExpired:
        return "expired"
    except TokenInvalid:
        return "invalid"
    user = db.session.get(User, user_id)
    return "invalid" if user is None else user


def _use_link(user: User, unused: sa.ColumnElement[bool], **values: object) -> bool:
    """Apply what a link does to ``user`` only while the state it is bound to
    is unchanged (``unused``), in one conditional UPDATE: of two requests using
    the same link at once, one gets it and the other finds the link used."""
    used = db.session.execute(
        sa.update(User)
        .where(User.id == user.id, unused)
        .values(**values)
        .returning(User.id)
    ).first()
    return used is not None


def _link_problem(reason: str, purpose: str) -> ResponseReturnValue:
    prefix = "" if purpose == ACTIVATE else "reset-"
    return render_template("accounts/link_problem.html", reason=prefix + reason), 400


@bp.route("/activate/<token>", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def activate(token: str) -> ResponseReturnValue:
    """Choose a password and activate the account; the link works once."""
    user = _load_link(ACTIVATE, token)
    if isinstance(user, str):
        return _link_problem(user, ACTIVATE)
    if request.method == "GET":
        return render_template("accounts/activate.html", email=user.email)
    password = request.form.get("password", "")
    problem = password_problem(password)
    if problem is not None:
        return _refuse("accounts/activate.html", problem, email=user.email)
    unused = User.activated_at.is_(None)
    chosen = hash_password(password)
    if not _use_link(user, unused, password_hash=chosen, activated_at=_now()):
        return _link_problem("invalid", ACTIVATE)
    log_out_everywhere(user)
    log_in(user)
    flash("Your account is active. Welcome!")
    return redirect(url_for("shop.index"), 303)


@bp.post("/activate/resend")
@limiter.limit("5 per minute")
@_mail_to_address
def resend_activation() -> ResponseReturnValue:
    """Send the activation link again (or what else fits the address)."""
    email = _email()
    problem = _email_problem(email)
    if problem is not None:
        flash(problem, "error")
        return redirect(url_for("accounts.signup"))
    _mail_next_step(email, _find(email))
    flash(MAIL_SENT.format(email=email))
    return redirect(url_for("accounts.login"))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login() -> ResponseReturnValue:
    """Log in and go back to ``?next=`` when that is a page of the shop."""
    next_url = request.values.get("next", "")
    if request.method == "GET":
        return render_template("accounts/login.html", next=next_url)
    email = _email()
    user = _find(email)
    stored = user.password_hash if user is not None and user.is_active else None
    # One hash either way: verify_password checks a dummy when there is none.
    matches = verify_password(stored, request.form.get("password", ""))
    if user is None or not matches:
        return _refuse(
            "accounts/login.html",
            "Wrong e-mail or password.",
            next=next_url,
            email=email,
        )
    log_in(user)
    flash("Welcome back.")
    return redirect_back(url_for("shop.index"))


def forget_stream_token(response: Response) -> Response:
    """Delete the cookie that lets this browser stream the user's channel."""
    response.delete_cookie(
        current_app.config["PATTERNS_STREAMS_TOKEN_COOKIE"],
        path="/streams/",
        secure=public_origin().is_https,
        httponly=True,
        samesite="Strict",
    )
    return response


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this browser's login session (and every copy of its cookie)."""
    log_out()
    flash("You are logged out.")
    return forget_stream_token(redirect_back(url_for("shop.index")))


@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
@_mail_to_address
def reset_request() -> ResponseReturnValue:
    """Mail a link to choose a new password."""
    if request.method == "GET":
        return render_template("accounts/reset_request.html")
    email = _email()
    problem = _email_problem(email)
    if problem is not None:
        return _refuse("accounts/reset_request.html", problem)
    user = _find(email)
    if user is None:
        _mail_no_account(email)
    else:
        token = dumps(RESET, user.id, fingerprint=user.reset_fingerprint)
        send_mail(
            user.email,
            "reset_password",
            link=public_url("accounts.reset_password", token=token),
            minutes=current_app.config["RESET_MAX_AGE"] // 60,
        )
    flash(MAIL_SENT.format(email=email))
    return redirect(url_for("accounts.login"))


def _reset_state(user_id: object) -> str:
    user = db.session.get(User, user_id) if isinstance(user_id, int) else None
    return user.reset_fingerprint if user is not None else "missing"


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """Choose a new password; every login session of the account ends. The
    link proves the mailbox, so it also activates an account not yet active."""
    user = _load_link(RESET, token)
    if isinstance(user, str):
        return _link_problem(user, RESET)
    if request.method == "GET":
        return render_template("accounts/reset_password.html")
    password = request.form.get("password", "")
    problem = password_problem(password)
    if problem is not None:
        return _refuse("accounts/reset_password.html", problem)
    unused = sa.and_(
        User.password_hash.is_not_distinct_from(user.password_hash),
        User.last_login_at.is_not_distinct_from(user.last_login_at),
    )
    chosen = hash_password(password)
    activated_at = user.activated_at or _now()
    if not _use_link(user, unused, password_hash=chosen, activated_at=activated_at):
        return _link_problem("invalid", RESET)
    log_out_everywhere(user)
    flash("Your password is changed. Log in with the new one.")
    return forget_stream_token(redirect(url_for("accounts.login")))
