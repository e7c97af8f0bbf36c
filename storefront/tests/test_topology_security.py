"""The shipped deployment (``make up``: nginx, both pools, the worker, no SMTP
server) attacked from outside: no mailbox to read, no link to another host, no
host nginx does not serve, headers and cookies as the app sets them, sessions
that end, and caps on the streams one client holds."""

from __future__ import annotations

import http.client
import json
import re
import time
import uuid

from .deployment import Browser
from .deployment import sign_up_and_activate

MAILBOX_WARNING = "stays queued in the outbox until an SMTP server is configured"


def fresh_email():
    return f"{uuid.uuid4().hex[:10]}@example.com"


def test_the_mailbox_is_closed_and_mail_waits_in_the_outbox(topology):
    email = fresh_email()
    browser = Browser(topology.url)
    browser.post("/signup", {"email": email}, token_from="/signup")
    assert browser.get("/dev/mailbox")[0] == 404
    assert 'href="/dev/mailbox"' not in browser.get("/")[2]
    (mail,) = [m for m in topology.mails() if m[0] == email]
    assert mail[1] == "Activate your Storefront account"
    assert mail[3] is False, "queued, not sent and not shown"
    assert MAILBOX_WARNING in topology.log.read_text()


def test_hosts_nginx_does_not_serve_get_no_answer(topology):
    for request in (
        b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        # nginx takes the host of an absolute-form target over the header.
        b"GET http://evil.example/reset HTTP/1.1\r\n"
        b"Host: " + topology.url.split("//")[1].encode() + b"\r\n"
        b"Connection: close\r\n\r\n",
    ):
        assert topology.raw(request) == b"", request


def test_an_absolute_target_for_the_shop_with_a_foreign_host_header_is_refused(
    topology,
):
    answer = topology.raw(
        f"GET {topology.url}/reset HTTP/1.1\r\nHost: evil.example\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_links_in_mail_use_the_public_url_whatever_the_request_says(topology):
    email = fresh_email()
    browser = Browser(topology.url)
    browser.post("/signup", {"email": email}, token_from="/signup")
    browser.post(
        "/reset",
        {"email": email},
        token_from="/reset",
        headers={"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"},
    )
    bodies = [m[2] for m in topology.mails() if m[0] == email]
    assert len(bodies) == 2
    for body in bodies:
        assert "evil.example" not in body
        assert re.search(re.escape(topology.url) + r"/(activate|reset)/\S+", body)


def test_pages_carry_the_security_headers_and_cookie_flags(topology):
    connection = http.client.HTTPConnection(topology.host, topology.port, timeout=10)
    connection.request("GET", "/login")
    response = connection.getresponse()
    page = response.read().decode()
    headers = response.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "private, no-store"
    assert "Strict-Transport-Security" not in headers, "plain http here"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    stylesheet = re.search(r'href="(/static/style\.[0-9a-f]{12}\.css)"', page)[1]
    connection.request("GET", stylesheet)
    static = connection.getresponse()
    static.read()
    assert static.status == 200
    assert static.headers["X-Content-Type-Options"] == "nosniff"
    assert "immutable" in static.headers["Cache-Control"]
    connection.close()


def test_readyz_tells_the_public_only_ready_or_not(topology):
    status, _, body = Browser(topology.url).get("/readyz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_a_copied_session_cookie_dies_with_the_logout(topology):
    browser = sign_up_and_activate(topology, fresh_email())
    assert browser.get("/orders")[1] == topology.url + "/orders"
    thief = Browser(topology.url)
    thief.cookies.set_cookie(browser.cookie("session"))
    assert thief.get("/orders")[1] == topology.url + "/orders"
    browser.get("/activity")
    assert browser.cookie("stream_token") is not None
    browser.post("/logout", {}, token_from="/")
    assert browser.cookie("stream_token") is None, "logout deletes the token"
    assert thief.get("/orders")[1].startswith(topology.url + "/login")


def test_a_stream_opened_with_a_stolen_cookie_ends_with_the_logout(topology):
    browser = sign_up_and_activate(topology, fresh_email())
    browser.get("/activity")
    cookies = "; ".join(
        f"{name}={browser.cookie(name).value}" for name in ("session", "stream_token")
    )
    connection = http.client.HTTPConnection(topology.host, topology.port, timeout=10)
    connection.request("GET", "/streams/live", headers={"Cookie": cookies})
    stream = connection.getresponse()
    assert stream.status == 200
    assert stream.readline().startswith(b"retry: ")
    browser.post("/account/logout-everywhere", {}, token_from="/account")
    tail = b""
    while line := stream.readline():  # a 10 s timeout fails the test
        tail += line
    connection.close()
    assert b"retry: " in tail, tail


def open_stream(topology, cookie=None):
    """A stream held open through nginx: (connection, status, body so far)."""
    connection = http.client.HTTPConnection(topology.host, topology.port, timeout=10)
    headers = {"Accept": "text/event-stream"}
    if cookie:
        headers["Cookie"] = cookie
    connection.request("GET", "/streams/live", headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        return connection, response.status, response.headers, response.read()
    return connection, 200, response.headers, response.readline()


def session_cookie(browser):
    session = browser.cookie("session")
    return f"session={session.value}"


def test_streams_are_capped_per_user_by_the_app_and_per_address_by_nginx(topology):
    # Last in the module: closed streams give their slots back only once the
    # stream worker writes to them again (a heartbeat, 15 s later).
    held = []
    try:
        ada = session_cookie(sign_up_and_activate(topology, fresh_email()))
        held += [open_stream(topology, ada) for _ in range(10)]
        assert [s[1] for s in held] == [200] * 10
        refused, status, headers, body = open_stream(topology, ada)
        refused.close()
        assert status == 429
        assert headers["Retry-After"] == "15"
        assert b"at most 10 per client" in body

        grace = session_cookie(sign_up_and_activate(topology, fresh_email()))
        held += [open_stream(topology, grace) for _ in range(10)]
        assert [s[1] for s in held] == [200] * 20
        # A third user from the same address: nginx's cap of 20 per address.
        carol = session_cookie(sign_up_and_activate(topology, fresh_email()))
        refused, status, headers, body = open_stream(topology, carol)
        refused.close()
        assert status == 429
        assert headers["Retry-After"] == "15"
        assert body == b"Too many open streams from this address.\n"
    finally:
        for connection, *_ in held:
            connection.close()
    # Nginx frees an address' slots as soon as its connections close.
    deadline = time.monotonic() + 10
    while True:
        connection, status, _, _ = open_stream(topology, carol)
        connection.close()
        if status == 200:
            break
        assert time.monotonic() < deadline, "nginx kept the closed streams"
        time.sleep(0.2)
