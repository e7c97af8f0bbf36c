"""``redirect_back`` end to end."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_patterns.redirects import redirect_back

# redirect_back, end to end


@pytest.fixture
def app():
    app = Flask("redirects")
    app.config["SERVER_NAME"] = "testserver"

    @app.route("/login", methods=["GET", "POST"])
    def login():
        return redirect_back("/home")

    @app.route("/settings", methods=["GET", "POST"])
    def settings_page():
        return redirect_back("/home")

    @app.post("/session")
    def log_in():
        return redirect_back("/home", referrer=False)

    @app.post("/cart/add")
    def add_to_cart():
        return redirect_back("/cart", param="return_to")

    return app


@pytest.fixture
def client(app):
    return app.test_client()


def location(response) -> str:
    return response.headers["Location"]


def test_redirect_back_follows_a_safe_next_parameter(client):
    response = client.get("/login?next=/account")
    assert response.status_code == 302
    assert location(response) == "/account"


def test_redirect_back_emits_the_normalized_url_it_checked(client):
    cases = {
        "/a/../account?x=1#top": "/account?x=1#top",
        "//testserver/account": "/account",
        "HTTP://TESTSERVER:80/Account": "/Account",
        "/path with space": "/path%20with%20space",
        "account": "/account",
        "HTTPS://testserver/secure": "https://testserver/secure",
        # WHATWG keeps these as they are; Werkzeug encodes them, and so do we.
        "/a|b[c]": "/a%7Cb%5Bc%5D",
    }
    for target, expected in cases.items():
        response = client.get("/login", query_string={"next": target})
        assert location(response) == expected, target


def test_redirect_back_reads_a_form_field_on_post_and_answers_303(client):
    response = client.post("/login", data={"next": "/account"})
    assert response.status_code == 303
    assert location(response) == "/account"


def test_the_query_parameter_wins_over_the_form_field(client):
    response = client.post("/login?next=/from-query", data={"next": "/from-form"})
    assert location(response) == "/from-query"


def test_a_custom_parameter_name_is_used(client):
    response = client.post("/cart/add", data={"return_to": "/products/7"})
    assert location(response) == "/products/7"
    response = client.post("/cart/add", data={"next": "/products/7"})
    assert location(response) == "/cart"


def test_redirect_back_falls_back_to_the_referer(client):
    response = client.get("/login", headers={"Referer": "http://testserver/products"})
    assert location(response) == "/products"


def test_an_unsafe_next_goes_to_the_fallback(client):
    for target in ["//evil.com", "/\\evil.com", "https://evil.com/", "javascript:x"]:
        response = client.get("/login", query_string={"next": target})
        assert response.status_code == 302
        assert location(response) == "/home", target


def test_an_unsafe_next_does_not_hide_a_safe_referer(client):
    response = client.get(
        "/login?next=//evil.com", headers={"Referer": "http://testserver/products"}
    )
    assert location(response) == "/products"


def test_without_the_referrer_an_unsafe_next_goes_to_the_fallback(client):
    form = "http://testserver/login?next=//evil.com"
    response = client.post(
        "/session", data={"next": "//evil.com"}, headers={"Referer": form}
    )
    assert location(response) == "/home"
    response = client.post("/session", headers={"Referer": form})
    assert location(response) == "/home"
    response = client.post("/session", data={"next": "/orders"})
    assert location(response) == "/orders"


def test_an_unsafe_referer_goes_to_the_fallback(client):
    response = client.get("/login", headers={"Referer": "https://evil.com/login"})
    assert location(response) == "/home"


def test_control_characters_in_next_go_to_the_fallback_not_a_500(client):
    for target in ["/a\r\nSet-Cookie: x=1", "/%0d%0aSet-Cookie:x=1", "/\x00"]:
        response = client.get("/login", query_string={"next": target})
        assert response.status_code == 302
        assert location(response) == "/home"
        assert "Set-Cookie" not in response.headers


def test_a_next_equal_to_the_current_page_goes_to_the_fallback(client):
    for target in ["/settings", "settings", "http://testserver/settings#section"]:
        response = client.post("/settings", data={"next": target})
        assert location(response) == "/home", target
    response = client.post(
        "/settings", headers={"Referer": "http://testserver/settings"}
    )
    assert location(response) == "/home"


def test_a_page_that_differs_only_in_its_query_is_a_different_page(client):
    response = client.post("/settings", data={"next": "/settings?tab=mail"})
    assert location(response) == "/settings?tab=mail"
    response = client.post("/settings", headers={"Referer": "http://testserver/home"})
    assert location(response) == "/home"
    response = client.post(
        "/settings", headers={"Referer": "http://testserver/dashboard"}
    )
    assert location(response) == "/dashboard"


def test_allowed_hosts_come_from_the_config(app, client):
    target = "https://shop.example.com/cart"
    assert location(client.get("/login", query_string={"next": target})) == "/home"
    app.config["PATTERNS_REDIRECT_ALLOWED_HOSTS"] = ["shop.example.com"]
    assert location(client.get("/login", query_string={"next": target})) == target


def test_require_https_comes_from_the_config(app, client):
    app.config["PATTERNS_REDIRECT_ALLOWED_HOSTS"] = ["shop.example.com"]
    app.config["PATTERNS_REDIRECT_REQUIRE_HTTPS"] = True
    insecure = client.get("/login?next=http://shop.example.com/cart")
    assert location(insecure) == "/home"
    relative = client.get("/login?next=/account")
    assert location(relative) == "/account"


def test_an_https_request_never_redirects_back_to_http(client):
    response = client.get(
        "/login?next=http://testserver/account", base_url="https://testserver"
    )
    assert location(response) == "/home"
    response = client.get("/login?next=/account", base_url="https://testserver")
    assert location(response) == "/account"


def test_the_request_host_is_whatever_host_the_request_came_to(client):
    response = client.get(
        "/login?next=http://shop.local:8000/x", base_url="http://shop.local:8000"
    )
    assert location(response) == "/x"
    response = client.get(
        "/login?next=http://testserver/x", base_url="http://shop.local"
    )
    assert location(response) == "/home"
