"""Every form of the shop, as WTForms classes (through Flask-WTF, which adds the
CSRF token): the fields, their limits and the messages a visitor sees. The
templates render them with one macro, ``forms.html``'s ``render_form``."""

from __future__ import annotations

import typing as t

import email_validator
from flask import request
from flask_wtf import FlaskForm
from wtforms import EmailField
from wtforms import Field
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import StringField
from wtforms import SubmitField
from wtforms.validators import Email
from wtforms.validators import InputRequired
from wtforms.validators import StopValidation
from wtforms.validators import ValidationError

from .passwords import MAX_LENGTH
from .passwords import MIN_LENGTH
from .passwords import password_problem

#: The longest address SMTP carries (RFC 5321 with RFC 3696's erratum).
MAX_EMAIL = 254
#: The longest public name.
MAX_NAME = 40
INVALID_EMAIL = "Enter a valid e-mail address."


def normalized_email(value: str) -> str:
    """An address as the shop keeps and compares it, so that one mailbox is
    one account however it is written: trimmed, in lower case, the domain in
    the ASCII form IDNA gives it (``EXAMPLE.com``, fullwidth letters, ``bücher``
    and ``xn--bcher-kva`` are each one domain), which every mail server takes,
    and a local part that is not ASCII in NFC. What email-validator cannot
    read (not an address, or a domain such as ``.local``) is only trimmed and
    lowered, as addresses were before it."""
    address = value.strip()
    if len(address) <= MAX_EMAIL:  # nothing looks at a 100 kB address
        try:
            valid = email_validator.validate_email(
                address, check_deliverability=False, globally_deliverable=False
            )
            address = valid.ascii_email or valid.normalized
        except email_validator.EmailNotValidError:
            pass
    return address.lower()


def _normalized_email(value: object) -> object:
    return normalized_email(value) if isinstance(value, str) else value


def _collapsed(value: object) -> object:
    return " ".join(value.split()) if isinstance(value, str) else value


def _check(problem: t.Callable[[str], str | None]) -> t.Callable[[t.Any, Field], None]:
    """A validator from a function that says what is wrong with a value."""

    def validate(form: t.Any, field: Field) -> None:
        message = problem(field.data or "")
        if message is not None:
            raise ValidationError(message)

    return validate


def _address_problem(address: str) -> str | None:
    # email-validator lets a longer local part pass; SMTP (RFC 5321) does not.
    return INVALID_EMAIL if len(address.rpartition("@")[0]) > 64 else None


def _short_enough(form: t.Any, field: Field) -> None:
    # The length first, and alone: nothing else looks at a 100 kB address.
    if len(field.data or "") > MAX_EMAIL:
        raise StopValidation(INVALID_EMAIL)


def _plausible(address: str) -> str | None:
    """Why ``address`` cannot be one the shop has an account for: the checks
    accounts were made with before email-validator, so that every one of them
    can still log in and reset its password."""
    local, _, domain = address.partition("@")
    valid = (
        1 <= len(local) <= 64
        and "@" not in domain
        and "." in domain[1:-1]
        and not any(char.isspace() for char in address)
    )
    return None if valid else INVALID_EMAIL


def _email_field(*, new: bool) -> EmailField:
    """An address: for a new account (``new``) one email-validator takes as
    deliverable (no DNS lookup); for finding an account, any plausible one."""
    checks = (
        [Email(INVALID_EMAIL, granular_message=False), _check(_address_problem)]
        if new
        else [_check(_plausible)]
    )
    return EmailField(
        "E-mail",
        filters=[_normalized_email],
        validators=[InputRequired(INVALID_EMAIL), _short_enough, *checks],
        render_kw={"autocomplete": "email", "maxlength": MAX_EMAIL},
    )


def _new_password_field(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[_check(password_problem)],
        render_kw={
            "autocomplete": "new-password",
            "minlength": MIN_LENGTH,
            "maxlength": MAX_LENGTH,
            "required": True,
        },
    )


class ShopForm(FlaskForm):
    """The base of the shop's forms: they read the text fields of the form
    sent. Flask-WTF would also give them the request's files and a JSON body,
    whose values (a file, a number, a list) are not the text every field and
    validator here expects."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: t.Any, formdata: t.Any) -> t.Any:
            if formdata is None or hasattr(formdata, "getlist"):
                return formdata  # what the caller gave
            # Flask-WTF's default, "from the request": its form fields only.
            return request.form if form.is_submitted() and request.form else None


class ButtonForm(ShopForm):
    """A form that is only a button (log out, retry): its CSRF token."""


class SignupForm(ShopForm):
    email = _email_field(new=True)
    submit = SubmitField("Sign up")


class ResendForm(ShopForm):
    email = _email_field(new=False)
    submit = SubmitField("Send a new activation link")


class ResetRequestForm(ShopForm):
    email = _email_field(new=False)
    submit = SubmitField("Send me a link")


class LoginForm(ShopForm):
    email = _email_field(new=False)
    password = PasswordField(
        "Password",
        validators=[InputRequired("Enter your password.")],
        render_kw={"autocomplete": "current-password"},
    )
    #: Where to go once logged in, if that is a page of the shop.
    next = HiddenField()
    submit = SubmitField("Log in")


class ActivateForm(ShopForm):
    password = _new_password_field("Password")
    submit = SubmitField("Activate")


class ResetPasswordForm(ShopForm):
    password = _new_password_field("New password")
    submit = SubmitField("Save")


class ChangePasswordForm(ShopForm):
    current = PasswordField(
        "Current password",
        validators=[InputRequired("Enter your current password.")],
        render_kw={"autocomplete": "current-password"},
    )
    password = _new_password_field("New password")
    submit = SubmitField("Change the password")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be the public name, or ``None``."""
    import unicodedata

    if len(name) > MAX_NAME:
        return f"Choose a name of at most {MAX_NAME} characters."
    if "@" in unicodedata.normalize("NFKC", name):  # also a fullwidth at sign
        return "A public name must not be an e-mail address."
    # Control and format characters (a right-to-left override, say) would let
    # a name pass for another one on the feed.
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        return "A public name must not contain control or format characters."
    return None


class NameForm(ShopForm):
    display_name = StringField(
        "Public name",
        filters=[_collapsed],
        validators=[_check(name_problem)],
        render_kw={"autocomplete": "nickname", "maxlength": MAX_NAME},
    )
    submit = SubmitField("Save the name")


class PurchaseForm(ShopForm):
    """Buy one item. Each rendering carries a one-time key, so that a repeated
    POST of the same form returns the first order."""

    purchase_key = HiddenField()
    submit = SubmitField("Buy now")


def text(field: Field) -> str:
    """A text field's value, ``""`` when it was not sent."""
    return str(field.data) if field.data is not None else ""


def first_error(form: FlaskForm) -> str:
    """The first message of a form that did not validate, for a flash."""
    for errors in form.errors.values():
        for error in errors:
            return str(error)
    return "The form was not valid."
