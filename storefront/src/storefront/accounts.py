"""Accounts: sign up with an address, activate through a signed link (where the
password is chosen), log in and out, reset a forgotten password.

Every form that takes an address answers the same, and does the same work (one
mail, one password hash), whether or not the address has an account, so that
none of them tells a stranger who shops here. The password is chosen on the
activation page, by whoever can read the mail: someone who signs up with your
address first gets no way into the account you then activate.

A form that fails its checks is shown again, with the messages, at its own
address (400); every other outcome redirects (303), so a reload repeats
nothing.
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
from .forms import ActivateForm
from .forms import first_error
from .forms import LoginForm
from .forms import normalized_email
from .forms import ResendForm
from .forms import ResetPasswordForm
from .forms import ResetRequestForm
from .forms import SignupForm
from .forms import text
from .links import public_origin
from .links import public_url
from .logins import current_user
from .logins import log_in
from .logins import log_out
from .logins import log_out_everywhere
from .mail import send_mail
from .models import User
from .passwords import hash_password
from .passwords import verify_password

bp = Blueprint("accounts", __name__)

ACTIVATE = "activate"
RESET = "reset-password"
MAIL_SENT = (
    "We sent a mail to {email}: open the link in it to go on. It can take a"
    " minute; look in the spam folder too."
)
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
    """The address the request's form names, as the forms normalize it (the
    per-address limit counts before the form is read)."""
    return normalized_email(request.form.get("email", ""))


def _form_page(template: str, **context: object) -> ResponseReturnValue:
    """The page of a form: as asked for (GET), or again with the form's
    messages, at its own address (400)."""
    page = render_template(template, **context)
    return page if request.method == "GET" else (page, 400)


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
    form = SignupForm()
    if not form.validate_on_submit():
        return _form_page("accounts/signup.html", form=form)
    email = text(form.email)
    _mail_next_step(email, _find(email) or _create_user(email))
    flash(MAIL_SENT.format(email=email))
    return redirect(url_for("accounts.login"), 303)


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
    return render_template(
        "accounts/link_problem.html",
        reason=prefix + reason,
        form=ResendForm(formdata=None),
    ), 400


@bp.route("/activate/<token>", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def activate(token: str) -> ResponseReturnValue:
    """Choose a password and activate the account; the link works once."""
    user = _load_link(ACTIVATE, token)
    if isinstance(user, str):
        return _link_problem(user, ACTIVATE)
    form = ActivateForm()
    if not form.validate_on_submit():
        return _form_page("accounts/activate.html", email=user.email, form=form)
    unused = User.activated_at.is_(None)
    chosen = hash_password(text(form.password))
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
    """Send the activation link again (or what else fits the address). The
    form sits on the page of a link that did not work, which cannot be shown
    again: a bad address goes to the sign-up page with the message."""
    form = ResendForm()
    if not form.validate():
        flash(first_error(form), "error")
        return redirect(url_for("accounts.signup"), 303)
    email = text(form.email)
    _mail_next_step(email, _find(email))
    flash(MAIL_SENT.format(email=email))
    return redirect(url_for("accounts.login"), 303)


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def login() -> ResponseReturnValue:
    """Log in and go to ``?next=`` when that is a page of the shop, to the
    products otherwise; someone already logged in goes there at once."""
    if current_user.is_authenticated and request.method == "GET":
        return _landing()
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        return render_template("accounts/login.html", form=form)
    if not form.validate_on_submit():
        return _form_page("accounts/login.html", form=form)
    user = _find(text(form.email))
    stored = user.password_hash if user is not None and user.is_active else None
    # One hash either way: verify_password checks a dummy when there is none.
    matches = verify_password(stored, text(form.password))
    if user is None or not matches:
        form.form_errors.append("Wrong e-mail or password.")
        return _form_page("accounts/login.html", form=form)
    log_in(user)
    flash("Welcome back.")
    return _landing()


def _landing() -> Response:
    """Where a login leads: a safe ``next``, else the products. Never the
    ``Referer``, which here is the login form itself."""
    return redirect_back(url_for("shop.index"), referrer=False)


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
    """End this browser's login session (and every copy of its cookie), and
    go to the products: the page the user was on may need the login."""
    log_out()
    flash("You are logged out.")
    return forget_stream_token(redirect(url_for("shop.index"), 303))


@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit("5 per minute", methods=["POST"])
@_mail_to_address
def reset_request() -> ResponseReturnValue:
    """Mail a link to choose a new password."""
    form = ResetRequestForm()
    if not form.validate_on_submit():
        return _form_page("accounts/reset_request.html", form=form)
    email = text(form.email)
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
    return redirect(url_for("accounts.login"), 303)


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
    form = ResetPasswordForm()
    if not form.validate_on_submit():
        return _form_page("accounts/reset_password.html", email=user.email, form=form)
    unused = sa.and_(
        User.password_hash.is_not_distinct_from(user.password_hash),
        User.last_login_at.is_not_distinct_from(user.last_login_at),
    )
    chosen = hash_password(text(form.password))
    activated_at = user.activated_at or _now()
    if not _use_link(user, unused, password_hash=chosen, activated_at=activated_at):
        return _link_problem("invalid", RESET)
    log_out_everywhere(user)
    flash("Your password is changed. Log in with the new one.")
    return forget_stream_token(redirect(url_for("accounts.login"), 303))
