"""The account page: the public name, the password, and logging out of every
browser at once."""

from __future__ import annotations

import unicodedata

from flask import Blueprint
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from .accounts import forget_stream_token
from .extensions import limiter
from .logins import log_in
from .logins import log_out_everywhere
from .logins import login_required
from .passwords import hash_password
from .passwords import password_problem
from .passwords import verify_password

bp = Blueprint("profile", __name__, url_prefix="/account")

MAX_NAME = 40


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the public name, or ``None``."""
    if len(name) > MAX_NAME:
        return f"Choose a name of at most {MAX_NAME} characters."
    if "@" in name:
        return "A public name must not be an e-mail address."
    # Control and format characters (a right-to-left override, say) would let
    # a name pass for another one on the feed.
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        return "A public name must not contain control or format characters."
    return None


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    """The account's settings."""
    return render_template("accounts/profile.html")


@bp.post("/name")
@login_required
def change_name() -> ResponseReturnValue:
    """Set the name the public feed shows when this user buys; empty for
    "Someone"."""
    name = " ".join(request.form.get("display_name", "").split())
    problem = name_problem(name)
    if problem is not None:
        flash(problem, "error")
        return render_template("accounts/profile.html"), 400
    g.user.display_name = name or None
    flash("Your public name is saved." if name else "The feed will say “Someone”.")
    return redirect(url_for("profile.index"), 303)


@bp.post("/password")
@login_required
@limiter.limit("10 per minute")
def change_password() -> ResponseReturnValue:
    """Change the password: every other browser is logged out, this one gets a
    new login session."""
    user = g.user
    if not verify_password(user.password_hash, request.form.get("current", "")):
        flash("The current password is wrong.", "error")
        return render_template("accounts/profile.html"), 400
    password = request.form.get("password", "")
    problem = password_problem(password)
    if problem is not None:
        flash(problem, "error")
        return render_template("accounts/profile.html"), 400
    user.password_hash = hash_password(password)
    log_out_everywhere(user)
    log_in(user)
    flash("Your password is changed; every other browser is logged out.")
    return redirect(url_for("profile.index"), 303)


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere() -> ResponseReturnValue:
    """End every login session of this account, in every browser."""
    log_out_everywhere(g.user)
    flash("You are logged out everywhere.")
    return forget_stream_token(redirect(url_for("accounts.login"), 303))
