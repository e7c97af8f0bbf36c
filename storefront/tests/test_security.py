"""The defences every request and response goes through: trusted hosts and the
public origin, cookie flags, security headers, caching, mail caps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import storefront

from .conftest import add_user
from .conftest import CSRF
from .conftest import csrf_token
from .conftest import log_in_as
from .conftest import mail_bodies

TEMPLATES = Path(storefront.__file__).parent / "templates"


# The public origin and trusted hosts


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example"}, {"Host": "evil.example:5000"}, {"Host": "127.0.0.2"}],
)
def test_a_request_for_an_unknown_host_is_refused_and_mails_nothing(
    app, client, headers
):
    response = client.post(
        "/reset",
        data={"email": "ada@example.com", "csrf_token": csrf_token(client)},
        headers=headers,
    )
    assert response.status_code == 400
    assert mail_bodies(app) == []


def test_an_absolute_form_target_with_an_unknown_host_is_refused(app, client):
    token = csrf_token(client)
    response = client.post(
        "http://evil.example/reset",
        data={"email": "ada@example.com", "csrf_token": token},
    )
    assert response.status_code == 400
    assert mail_bodies(app) == []


def test_links_in_mail_use_the_public_url_whatever_host_the_request_names(
    app_factory,
):
    app = app_factory(
        PUBLIC_URL="https://shop.example:8443/store",
        TRUSTED_HOSTS=["shop.example", "internal.example"],
        PROXY_HOPS=1,
    )
    client = app.test_client()
    headers = {
        "Host": "internal.example",
        "X-Forwarded-Host": "shop.example",
        "X-Forwarded-Proto": "http",
    }
    page = client.get("/signup", headers=headers).get_data(as_text=True)
    client.post(
        "/signup",
        data={"email": "ada@example.com", "csrf_token": CSRF.search(page)[1]},
        headers=headers,
    )
    (body,) = mail_bodies(app)
    assert "https://shop.example:8443/store/activate/" in body
    assert "internal.example" not in body


def test_loopback_public_urls_trust_every_name_of_loopback(app):
    assert app.config["TRUSTED_HOSTS"] == ["127.0.0.1", "localhost", "::1"]


def test_a_public_host_is_the_only_trusted_one(app_factory):
    app = app_factory(PUBLIC_URL="https://shop.example")
    assert app.config["TRUSTED_HOSTS"] == ["shop.example"]
    client = app.test_client()
    assert client.get("/healthz", base_url="https://shop.example").status_code == 200
    assert client.get("/healthz").status_code == 400  # Host: localhost


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("shop.example", "http:// or https://"),
        ("ftp://shop.example", "http:// or https://"),
        ("https://", "no host"),
        ("https://user:pw@shop.example", "user, a query or a fragment"),
        ("https://shop.example/?x=1", "user, a query or a fragment"),
        ("https://shop.example:99999", "Port"),
    ],
)
def test_an_unusable_public_url_stops_the_app_with_the_reason(app_factory, url, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        app_factory(PUBLIC_URL=url)


# Cookies and headers


def test_the_session_cookie_is_httponly_and_samesite_lax(client):
    cookie = client.get("/signup").headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_over_https_cookies_are_secure_and_hsts_is_sent(app_factory):
    app = app_factory(PUBLIC_URL="https://shop.example")
    client = app.test_client()
    response = client.get("/signup", base_url="https://shop.example")
    assert "Secure" in response.headers["Set-Cookie"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    user_id = add_user(app, "ada@example.com")
    log_in_as(app, client, user_id, base_url="https://shop.example")
    page = client.get("/activity", base_url="https://shop.example")
    stream_cookie = page.headers["Set-Cookie"]
    assert stream_cookie.startswith("stream_token=")
    assert "Secure" in stream_cookie


def test_no_hsts_over_plain_http(client):
    assert "Strict-Transport-Security" not in client.get("/").headers


@pytest.mark.parametrize(
    "path", ["/", "/signup", "/api/products", "/api/nope", "/nope", "/healthz"]
)
def test_every_response_carries_the_security_headers(client, path):
    headers = client.get(path).headers
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"


def test_a_failing_view_still_carries_the_headers(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    response = client.get("/boom")
    assert response.status_code == 500
    assert response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/orders", "/account", "/api/orders", "/"])
def test_personal_pages_and_api_answers_are_never_stored(app, client, path):
    log_in_as(app, client, add_user(app, "ada@example.com"))
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"


def test_static_files_keep_their_own_caching(client):
    page = client.get("/").get_data(as_text=True)
    hashed = re.search(r'href="(/static/style\.[0-9a-f]{12}\.css)"', page)[1]
    response = client.get(hashed)
    assert "immutable" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()


def test_templates_hold_no_inline_script_or_style_the_policy_would_block():
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"{template.name}: inline script {tag}"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{template.name}: handler"
        assert "<style" not in text, template.name
        assert not re.search(r"\sstyle\s*=", text), template.name
        assert "javascript:" not in text, template.name


def test_the_stream_token_cookie_is_deleted_with_its_own_flags(app_factory):
    app = app_factory(PUBLIC_URL="https://shop.example")
    client = app.test_client()
    log_in_as(
        app, client, add_user(app, "ada@example.com"), base_url="https://shop.example"
    )
    token = CSRF.search(client.get("/", base_url="https://shop.example").text)[1]
    # Flask-WTF wants a same-origin Referer over https (which Referrer-Policy:
    # same-origin keeps sending).
    response = client.post(
        "/logout",
        data={"csrf_token": token},
        base_url="https://shop.example",
        headers={"Referer": "https://shop.example/"},
    )
    assert response.status_code == 303, response.text
    (deletion,) = [
        c
        for c in response.headers.getlist("Set-Cookie")
        if c.startswith("stream_token=")
    ]
    for part in (
        "Max-Age=0",
        "Path=/streams/",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
    ):
        assert part in deletion


def test_private_streams_are_never_stored(app, client):
    log_in_as(app, client, add_user(app, "ada@example.com"))
    client.get("/activity")
    response = client.get("/streams/live", buffered=False)
    assert response.headers["Cache-Control"] == "private, no-store"
    response.close()


def test_one_address_gets_at_most_five_mails_an_hour_whoever_asks(app):
    statuses = []
    for n, (path, form_page) in enumerate(
        [("/signup", "/signup"), ("/reset", "/reset"), ("/activate/resend", "/signup")]
        * 2
    ):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"192.0.2.{n}"  # six senders
        response = client.post(
            path,
            data={
                "email": "victim@example.com",
                "csrf_token": csrf_token(client, form_page),
            },
        )
        statuses.append(response.status_code)
    assert statuses == [303] * 5 + [429]
    assert len(mail_bodies(app)) == 5
    other = app.test_client()
    response = other.post(
        "/reset",
        data={"email": "other@example.com", "csrf_token": csrf_token(other, "/reset")},
    )
    assert response.status_code == 303
