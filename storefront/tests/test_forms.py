"""The forms, their one macro, and what the app factory registers."""

from __future__ import annotations

import inspect

from flask import render_template_string

from flask_patterns.outbox import Outbox
from storefront import create_app
from storefront.extensions import outbox
from storefront.forms import LoginForm
from storefront.forms import NameForm
from storefront.forms import SignupForm


def test_the_macro_renders_hidden_fields_labels_and_the_button(app):
    with app.test_request_context():
        form = LoginForm(formdata=None, next="/orders")
        html = render_template_string(
            '{% from "forms.html" import render_form %}{{ render_form(form) }}',
            form=form,
        )
    assert '<input name="csrf_token" type="hidden" value="' in html
    assert '<input name="next" type="hidden" value="/orders">' in html
    assert '<label for="email">E-mail</label>' in html
    assert 'autocomplete="current-password"' in html
    assert '<button type="submit">Log in</button>' in html
    assert 'id="csrf_token"' not in html, "no id repeated by the forms on a page"


def test_addresses_are_normalized_and_checked_without_dns(app):
    with app.test_request_context(method="POST", data={"email": "  Ada@Example.COM "}):
        form = SignupForm(meta={"csrf": False})
        assert form.validate()
        assert form.email.data == "ada@example.com"
    for address in ["x" * 65 + "@example.com", "a" * 100_000 + "@example.com"]:
        with app.test_request_context(method="POST", data={"email": address}):
            form = SignupForm(meta={"csrf": False})
            assert not form.validate()
            assert form.errors == {"email": ["Enter a valid e-mail address."]}


def test_a_public_name_is_collapsed_and_checked(app):
    with app.test_request_context(method="POST", data={"display_name": "  Ada   L. "}):
        form = NameForm(meta={"csrf": False})
        assert form.validate()
        assert form.display_name.data == "Ada L."
    with app.test_request_context(
        method="POST", data={"display_name": "ada\uff20example.com"}
    ):
        form = NameForm(meta={"csrf": False})
        assert not form.validate()
        assert form.errors["display_name"] == [
            "A public name must not be an e-mail address."
        ]
    with app.test_request_context(
        method="POST", data={"display_name": "Ada\u202egnp.exe"}
    ):
        form = NameForm(meta={"csrf": False})
        assert not form.validate()
        assert "control or format characters" in form.errors["display_name"][0]


def test_the_factory_registers_the_mail_handler(tmp_path, monkeypatch):
    fresh = Outbox(db=outbox.db)
    monkeypatch.setattr("storefront.mail.outbox", fresh)
    assert "mail" not in fresh.handlers
    create_app({"SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{tmp_path}/s.db"})
    assert "mail" in fresh.handlers


def test_every_view_says_what_it_does(app):
    undocumented = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if view.__module__.startswith("storefront") and not inspect.getdoc(view)
    ]
    assert undocumented == []


def test_accounts_made_before_email_validator_still_log_in_and_reset(app):
    from .conftest import add_user
    from .conftest import csrf_token
    from .conftest import mail_bodies

    for address in ["carl@intranet.local", "bob@xn--bcher-kva.example"]:
        add_user(app, address)
    for typed in ["Carl@intranet.local", "bob@BÜCHER.example"]:
        client = app.test_client()
        form = {"email": typed, "password": "storefront"}
        response = client.post(
            "/login", data={**form, "csrf_token": csrf_token(client)}
        )
        assert (response.status_code, response.headers["Location"]) == (303, "/")
        reset = client.post(
            "/reset", data={"email": typed, "csrf_token": csrf_token(client, "/reset")}
        )
        assert reset.status_code == 303
    assert sum("/reset/" in body for body in mail_bodies(app)) == 2
    # A new account needs an address mail can reach.
    client = app.test_client()
    refused = client.post(
        "/signup",
        data={"email": "dora@intranet.local", "csrf_token": csrf_token(client)},
    )
    assert refused.status_code == 400
    assert "Enter a valid e-mail address." in refused.get_data(as_text=True)


def test_an_address_is_kept_in_the_ascii_form_every_mail_server_takes():
    from storefront.forms import normalized_email

    assert normalized_email(" ADA@BÜCHER.example ") == "ada@xn--bcher-kva.example"
    assert normalized_email("ada@xn--bcher-kva.example") == "ada@xn--bcher-kva.example"
    assert normalized_email("Ada@\uff25xample.com") == "ada@example.com"
    assert normalized_email("jose\u0301@example.com") == "jos\u00e9@example.com"
    assert normalized_email("Carl@Intranet.LOCAL") == "carl@intranet.local"
