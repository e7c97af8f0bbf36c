"""``is_safe_url``: Django's cases and more bypass payloads, allowed hosts,
https, and a property test against a browser's reading of the URL."""

from __future__ import annotations

import pytest
from ada_url import URL
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from flask_patterns.redirects import is_safe_url
from flask_patterns.redirects import MAX_URL_LENGTH
from flask_patterns.redirects import resolve_safe_url

HOST_URL = "http://testserver/"

# Every bad URL of Django's own test suite for url_has_allowed_host_and_scheme.
DJANGO_UNSAFE = [
    "http://example.com",
    "http:///example.com",
    "https://example.com",
    "ftp://example.com",
    r"\\example.com",
    r"\\\example.com",
    r"/\\/example.com",
    r"\\//example.com",
    r"/\/example.com",
    r"\/example.com",
    r"/\example.com",
    r"http:/\//example.com",
    r"http:\/example.com",
    r"http:/\example.com",
    'javascript:alert("XSS")',
    "\njavascript:alert(x)",
    "java\nscript:alert(x)",
    "\x08//example.com",
    r"http://otherserver\@example.com",
    r"http:\\testserver\@example.com",
    r"http://testserver\me:pass@example.com",
    r"http://testserver\@example.com",
    r"http:\\testserver\confirm\me@example.com",
    "http:999999999",
    "ftp:9999999999",
    "\n",
    "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
    "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
]

MORE_UNSAFE = [
    # extra slashes: browsers read three or more as "scheme-relative"
    "//example.com",
    "//example.com/",
    "///example.com",
    "////example.com",
    "/////github.com",
    "//////github.com/path",
    "http:////example.com",
    "https:///example.com",
    "http:example.com",
    "https:example.com",
    "https:/example.com",
    "http:/example.com",
    # backslashes anywhere
    "/\\github.com",
    "\\/github.com",
    "https://testserver\\.example.com",
    "/path\\..\\..\\example.com",
    # whitespace and control characters, leading, inside, trailing
    " //github.com",
    "\t//github.com",
    "//github.com ",
    "/\t/example.com",
    "\r\n//example.com",
    "\x00//example.com",
    "\x19////github.com",
    "\x7f//example.com",
    "\x85//example.com",
    "\u00a0//example.com",
    "\u200b//example.com",
    "\u2028//example.com",
    "\u3000//example.com",
    "\u200a///github.com",
    "/\u202eexample.com",
    "java\tscript:alert(1)",
    "/next\r\nSet-Cookie: session=evil",
    # user info, whatever it wraps
    "http://testserver@example.com",
    "http://example.com@testserver/",
    "http://user:pass@testserver/",
    "//testserver@example.com",
    "http://testserver:80@example.com",
    "http://testserver:@example.com",
    "https://testserver%2F@example.com",
    # schemes other than http and https
    "javascript:alert(1)",
    "JavaScript:alert(document.domain)",
    "javascript://testserver/%0Aalert(1)",
    "javascript:/testserver/",
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ws://testserver/",
    "wss://testserver/",
    "ftp://testserver/",
    "mailto:someone@example.com",
    "blob:http://testserver/uuid",
    "view-source:http://testserver/",
    "x:testserver",
    # other hosts, IPv4 and IPv6 forms, ports
    "http://testserver.example.com/",
    "http://example.com/testserver",
    "http://example.com#@testserver",
    "http://example.com?@testserver",
    "http://testserver:8080/",
    "http://testserver:443/",
    "https://testserver:80/",
    "http://testserver./",
    "http://127.0.0.1/",
    "http://0x7f.1/",
    "http://2130706433/",
    "http://[::1]/",
    "//[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1",
    "http://[testserver]/",
    # internationalized hosts and look-alikes (full-width letters, Cyrillic e, ...)
    "http://\uff54\uff45\uff53\uff54\uff53\uff45\uff52\uff56\uff45\uff52/",
    "http://tests\u0435rver/",
    "http://example.com。testserver/",
    "//ⓔⓧⓐⓜⓟⓛⓔ.com",
    "http://xn--tstserver-7ya/",
    "http://testserver\uff0f.example.com/",
    # percent-encoding
    "%2F%2Fexample.com",
    "%2f%2fexample.com",
    "/%2F/example.com",
    "/%2f%2fexample.com",
    "/%5Cexample.com",
    "%5C%5Cexample.com",
    "/%09/example.com",
    "%20//github.com",
    "%20\\\\github.com",
    "%20///github.com",
    "%19////github.com",
    "%E2%80%8A///github.com",
    "http%3A%2F%2Fexample.com",
    "http://example%2Ecom/",
    "//example%2ecom",
    "http://testserver%2eexample.com/",
    "http://test%73erver/",
    "/%0d%0aSet-Cookie:%20session=evil",
    "/%00",
    # paths that become a host once written relative
    "/.//example.com",
    "/..//example.com",
    "/a/..//example.com",
    "/%2e%2e//example.com",
    "http://testserver//example.com",
    # sizes and emptiness
    "",
    " ",
    "\t",
    "/" + "a" * MAX_URL_LENGTH,
]

DJANGO_SAFE = [
    "/view/?param=http://example.com",
    "/view/?param=https://example.com",
    "/view?param=ftp://example.com",
    "view/?param=//example.com",
    "https://testserver/",
    "HTTPS://testserver/",
    "//testserver/",
    "http://testserver/confirm?email=me@example.com",
    "/url%20with%20spaces/",
    "path/http:2222222222",
]

MORE_SAFE = [
    "/",
    "/dashboard",
    "dashboard/settings",
    "./here",
    "../up",
    "?page=2",
    "#reviews",
    "/confirm/me@example.com",
    "http////www.google.com",
    "/search?q=a+b&next=//example.com",
    "/view?next=%2F%2Fexample.com",
    "http://testserver/orders/7?tab=items#top",
    "//testserver/account",
    "http://TESTSERVER/Account",
    "http://testserver:80/",
    "https://testserver:443/cart",
    "/caf%C3%A9",
    "/café",
    "/path with space",
    "/javascript:alert(1)",
    "/" + "a" * (MAX_URL_LENGTH - 1),
]


def ids(payloads: list[str]) -> list[str]:
    return [ascii(payload)[:60] for payload in payloads]


@pytest.mark.parametrize(
    "target", DJANGO_UNSAFE + MORE_UNSAFE, ids=ids(DJANGO_UNSAFE + MORE_UNSAFE)
)
def test_unsafe_targets_are_refused(target):
    assert is_safe_url(target, host_url=HOST_URL) is False
    assert (
        is_safe_url(target, host_url=HOST_URL, allowed_hosts=["testserver2"]) is False
    )


@pytest.mark.parametrize(
    "target", DJANGO_SAFE + MORE_SAFE, ids=ids(DJANGO_SAFE + MORE_SAFE)
)
def test_safe_targets_are_accepted(target):
    assert is_safe_url(target, host_url=HOST_URL) is True
    assert is_safe_url(target, host_url=HOST_URL, allowed_hosts=["otherserver"]) is True


def test_the_payload_tables_are_large_and_free_of_duplicates():
    unsafe = DJANGO_UNSAFE + MORE_UNSAFE
    safe = DJANGO_SAFE + MORE_SAFE
    assert len(set(unsafe)) == len(unsafe) >= 60
    assert len(set(safe)) == len(safe) >= 15


def test_none_and_non_strings_are_not_safe():
    assert is_safe_url(None, host_url=HOST_URL) is False
    assert is_safe_url(b"/next", host_url=HOST_URL) is False  # type: ignore[arg-type]
    assert is_safe_url(42, host_url=HOST_URL) is False  # type: ignore[arg-type]


def test_user_info_is_refused_even_on_the_request_host():
    # Django accepts this when "user:pass@testserver" is an allowed host;
    # credentials in a redirect are never needed, so they are always refused.
    target = "http://user:pass@testserver/"
    assert not is_safe_url(target, host_url=HOST_URL, allowed_hosts=["testserver"])


def test_allowed_hosts_add_hosts_on_their_default_or_given_port():
    hosts = ["shop.example.com", "api.example.com:8443", "[::1]:8000", "BÜCHER.de"]

    def safe(target: str) -> bool:
        return is_safe_url(target, host_url=HOST_URL, allowed_hosts=hosts)

    assert safe("https://shop.example.com/cart")
    assert safe("http://shop.example.com/cart")
    assert safe("//SHOP.example.com/cart")
    assert not safe("https://shop.example.com:8443/")
    assert safe("https://api.example.com:8443/v1")
    assert not safe("https://api.example.com/v1")
    assert safe("http://[::1]:8000/")
    assert not safe("http://[::1]/")
    assert safe("https://xn--bcher-kva.de/")
    assert not safe("https://evil.example.com/")
    assert not safe("https://example.com/")


def test_a_single_string_is_one_allowed_host():
    assert is_safe_url(
        "http://good.com/good", host_url=HOST_URL, allowed_hosts="good.com"
    )
    assert not is_safe_url(
        "http://good.co/evil", host_url=HOST_URL, allowed_hosts="good.com"
    )


def test_the_request_host_keeps_its_port():
    host_url = "http://localhost:5000/"
    assert is_safe_url("http://localhost:5000/x", host_url=host_url)
    assert is_safe_url("/x", host_url=host_url)
    assert not is_safe_url("http://localhost/x", host_url=host_url)
    assert not is_safe_url("http://localhost:5001/x", host_url=host_url)


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("https://example.com/p", True),
        ("HTTPS://example.com/p", True),
        ("/view/?param=http://example.com", True),
        ("relative/path", True),
        ("http://example.com/p", False),
        ("ftp://example.com/p", False),
        ("//example.com/p", False),
        ("http://testserver/p", False),
    ],
)
def test_require_https_refuses_downgrades(target, safe):
    result = is_safe_url(
        target, host_url=HOST_URL, allowed_hosts={"example.com"}, require_https=True
    )
    assert result is safe


def test_require_https_on_an_https_request_keeps_scheme_relative_targets():
    host_url = "https://testserver/"
    assert is_safe_url("//testserver/x", host_url=host_url, require_https=True)
    assert is_safe_url("/x", host_url=host_url, require_https=True)
    assert not is_safe_url("http://testserver/x", host_url=host_url, require_https=True)


def test_misconfiguration_is_an_error_not_a_verdict():
    with pytest.raises(ValueError, match="host_url"):
        is_safe_url("/", host_url="testserver")
    with pytest.raises(ValueError, match="host_url"):
        is_safe_url("/", host_url="ftp://testserver/")
    for entry in ["", "a/b", "user@host", "host:port", "[::1", "host:1:2"]:
        with pytest.raises(ValueError, match="allowed_hosts"):
            is_safe_url("/", host_url=HOST_URL, allowed_hosts=[entry])


def test_the_resolved_url_is_the_whatwg_serialization():
    def resolve(target: str) -> str | None:
        return resolve_safe_url(target, host_url="http://testserver/shop/")

    assert resolve("cart") == "http://testserver/shop/cart"
    assert resolve("/a/./b/../c?x=1#y") == "http://testserver/a/c?x=1#y"
    assert resolve("HTTP://TestServer:80/%7e") == "http://testserver/%7e"
    assert resolve("/path with space") == "http://testserver/path%20with%20space"
    assert resolve("//evil.com") is None


# Property: whatever is accepted, a browser resolves onto the request's host.

BLOCKS = [
    "/", "\\", "//", "///", "@", ":", ".", "..", "?", "#", "%",
    "http:", "https:", "HTTP:", "javascript:", "data:", "ftp:", "file:",
    "%2f", "%2F", "%5c", "%09", "%00", "%40", "%2e",
    " ", "\t", "\n", "\r", "\x00", "\x08", "\x1f", "\x7f", "\u00a0", "\u3000",
    "testserver", "example.com", "testserver.example.com", "127.0.0.1",
    "[::1]", ":80", ":443", ":8080", "。", "xn--", "ⓔ",
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45",
]  # fmt: skip

targets = st.lists(
    st.one_of(st.sampled_from(BLOCKS), st.text(max_size=4)), max_size=10
).map("".join)


def browser_resolution(target: str, host_url: str) -> URL:
    return URL(target, host_url)


@settings(max_examples=2000)
@given(target=targets)
@example(target="/\\example.com")
@example(target="http:\\\\testserver\\@example.com")
@example(target="\x19////github.com")
def test_accepted_targets_resolve_onto_the_request_host_in_a_browser(target):
    href = resolve_safe_url(target, host_url=HOST_URL)
    if href is None:
        assert not is_safe_url(target, host_url=HOST_URL)
        return
    url = browser_resolution(target, HOST_URL)
    assert url.protocol in ("http:", "https:")
    assert url.hostname == "testserver"
    assert url.port == ""
    assert url.username == url.password == ""
    assert href == url.href


@settings(max_examples=1000)
@given(target=targets)
def test_with_https_required_accepted_targets_keep_the_exact_origin(target):
    host_url = "https://testserver/"
    if is_safe_url(target, host_url=host_url, require_https=True):
        assert browser_resolution(target, host_url).origin == "https://testserver"
