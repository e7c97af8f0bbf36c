"""The account page: the public name, the password, and logging out of every
browser at once.

Each form posts to an address of its own and comes back to the account page,
with what happened in a flash, whatever the outcome: a reload of the page
never sends a form again.
"""

from __future__ import annotations

from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import url_for
from flask.typing import ResponseReturnValue

from .accounts import forget_stream_token
from .extensions import limiter
from .forms import ChangePasswordForm
from .forms import first_error
from .forms import NameForm
from .forms import text
from .logins import current_user
from .logins import log_in
from .logins import log_out_everywhere
from .logins import logged_in_user
from .logins import login_required
from .passwords import hash_password
from .passwords import verify_password

bp = Blueprint("profile", __name__, url_prefix="/account")


def _back() -> ResponseReturnValue:
    return redirect(url_for("profile.index"), 303)


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    """The account's settings."""
    return render_template(
        "accounts/profile.html",
        name_form=NameForm(formdata=None, display_name=current_user.display_name),
        password_form=ChangePasswordForm(formdata=None),
    )


@bp.post("/name")
@login_required
def change_name() -> ResponseReturnValue:
    """Set the name the public feed shows when this user buys; empty for
    "Someone"."""
    form = NameForm()
    if not form.validate():
        flash(first_error(form), "error")
        return _back()
    name = form.display_name.data or ""
    current_user.display_name = name or None
    flash("Your public name is saved." if name else "The feed will say “Someone”.")
    return _back()


@bp.post("/password")
@login_required
@limiter.limit("10 per minute")
def change_password() -> ResponseReturnValue:
    """Change the password: every other browser is logged out, this one gets a
    new login session."""
    user = logged_in_user()
    form = ChangePasswordForm()
    if not form.validate():
        flash(first_error(form), "error")
        return _back()
    if not verify_password(user.password_hash, text(form.current)):
        flash("The current password is wrong.", "error")
        return _back()
    user.password_hash = hash_password(text(form.password))
    log_out_everywhere(user)
    log_in(user)
    flash("Your password is changed; every other browser is logged out.")
    return _back()


@bp.post("/logout-everywhere")
@login_required
def logout_everywhere() -> ResponseReturnValue:
    """End every login session of this account, in every browser, and go to
    the products."""
    log_out_everywhere(logged_in_user())
    flash("You are logged out everywhere.")
    return forget_stream_token(redirect(url_for("shop.index"), 303))
