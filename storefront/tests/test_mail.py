from __future__ import annotations

import pytest
from flask import Flask

from storefront.mail import render_mail
from storefront.mail import send_smtp

from .conftest import csrf_token


def test_activation_mail_goes_out_through_a_real_smtp_server(app_factory, smtp_server):
    app = app_factory(SMTP_URL=smtp_server.url)
    client = app.test_client()
    token = csrf_token(client)
    response = client.post(
        "/signup",
        data={"email": "ada@example.com", "csrf_token": token},
    )
    assert response.status_code == 303
    (message,) = smtp_server.messages
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Storefront <shop@localhost>"
    assert message["Subject"] == "Activate your Storefront account"
    # From the public origin, whatever Host the request came with.
    assert "http://127.0.0.1:5000/activate/" in message.get_content()


def test_smtp_urls_other_than_smtp_and_smtps_are_refused():
    with pytest.raises(ValueError, match="Unsupported SMTP URL"):
        send_smtp("http://example.com", "a@b", render_mail_stub())


def render_mail_stub():
    from storefront.mail import Mail

    return Mail("a@example.com", "subject", "body\n")


def test_mail_templates_need_a_subject_line(tmp_path):
    app = Flask(__name__, template_folder=str(tmp_path))
    (tmp_path / "mails").mkdir()
    (tmp_path / "mails" / "bad.txt").write_text("No subject\n\nbody")
    with app.app_context(), pytest.raises(ValueError, match="Subject"):
        render_mail("a@example.com", "bad")
