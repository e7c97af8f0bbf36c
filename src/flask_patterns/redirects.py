"""Redirect back to where the user came from (``?next=``, a form field, the
``Referer``) without becoming an open redirect.

:func:`is_safe_url` decides as a browser would: it resolves the target against the
request URL with a WHATWG URL parser (the standard browsers implement) and accepts
only http(s) URLs on an allowed host. It also refuses every target that some reader
could take differently (backslashes, control characters, ``///``, credentials,
``http:host`` without slashes, percent-encoded tricks), because the server, proxies
and other parsers do not all read URLs the way browsers do.
:func:`redirect_back` then redirects to the normalized URL it checked, never to
the raw input. See ``docs/redirects.md``.
"""

from __future__ import annotations

import re
import typing as t
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

from ada_url import URL
from flask import current_app
from flask import redirect
from flask import request
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

__all__ = [
    "MAX_URL_LENGTH",
    "is_safe_url",
    "redirect_back",
    "resolve_safe_url",
]

#: Longer targets are refused without parsing them (Django uses the same limit).
MAX_URL_LENGTH = 2048

_DEFAULT_PORTS = {"http:": 80, "https:": 443}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_AUTHORITY_END = re.compile(r"[/?#]")
_HOST_ENTRY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:/\\?#@%\[\]]+)(?::([0-9]{1,5}))?")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True)
class _Host:
    """A host name with its port; ``port=None`` means the default port of
    whichever of http and https the target uses."""

    hostname: str
    port: int | None

    def accepts(self, url: URL) -> bool:
        port = int(url.port) if url.port else _DEFAULT_PORTS[url.protocol]
        expected = self.port if self.port is not None else _DEFAULT_PORTS[url.protocol]
        return url.hostname == self.hostname and port == expected


def is_safe_url(
    target: str | None,
    *,
    host_url: str,
    allowed_hosts: str | t.Iterable[str] = (),
    require_https: bool = False,
) -> bool:
    """Tell whether redirecting to ``target`` keeps the user on an allowed host.

    :param target: the URL to check, usually from user input; ``None`` and the
        empty string are not safe.
    :param host_url: the request's own root URL (``request.host_url``), such as
        ``"http://testserver/"``; relative targets resolve against it and its host
        is always allowed.
    :param allowed_hosts: more hosts to accept, as ``"host"`` (the default port of
        the target's scheme) or ``"host:port"``; a single string is one host.
    :param require_https: refuse targets that name their scheme or host and
        resolve to plain http (a downgrade); relative paths keep the request's
        scheme and stay allowed.

    Both http and https are accepted on an allowed host, so ``https://`` upgrades
    of the request's own host pass. User info (``user:pass@``) is always refused.
    """
    return (
        resolve_safe_url(
            target,
            host_url=host_url,
            allowed_hosts=allowed_hosts,
            require_https=require_https,
        )
        is not None
    )


def resolve_safe_url(
    target: str | None,
    *,
    host_url: str,
    allowed_hosts: str | t.Iterable[str] = (),
    require_https: bool = False,
) -> str | None:
    """Return the absolute, WHATWG-serialized URL a browser would go to for
    ``target``, or ``None`` when :func:`is_safe_url` would say it is not safe.

    The parameters are those of :func:`is_safe_url`.
    """
    if not isinstance(target, str) or not target or len(target) > MAX_URL_LENGTH:
        return None
    hosts = [_request_host(host_url), *_allowed_hosts(allowed_hosts)]
    href = _resolve(target, host_url, hosts, require_https)
    # The percent-decoded reading must pass too: a server or a framework on the
    # way may decode the target once before a browser sees it.
    decoded = unquote(target)
    if decoded != target and _resolve(decoded, host_url, hosts, require_https) is None:
        return None
    return href


def redirect_back(
    fallback: str, *, param: str = "next", referrer: bool = True
) -> Response:
    """Redirect to where the request asks to go back to, if that is safe.

    Candidates, first acceptable wins: the ``param`` query argument, a form
    field of that name (for POST and other unsafe methods), then the ``Referer``
    header (unless ``referrer`` is false). A candidate is refused when
    :func:`is_safe_url` refuses it or when it is the current page (fragment
    ignored). Without a candidate, redirect to ``fallback`` (a URL or a path
    from the app, not checked).

    Pass ``referrer=False`` where the page the user came from is the wrong
    place to go back to: after a login, the ``Referer`` is the login form.

    The ``Location`` is the normalized URL that was checked: a path (with query
    and fragment) when the target has the request's own origin, the absolute URL
    otherwise, percent-encoded the way Werkzeug writes a ``Location`` (and checked
    again in that form). GET and HEAD get a 302, other methods a 303, so the
    browser follows with a GET.

    Configuration: ``PATTERNS_REDIRECT_ALLOWED_HOSTS`` (default empty) and
    ``PATTERNS_REDIRECT_REQUIRE_HTTPS`` (default ``False``; an https request
    always requires https, so a redirect back never downgrades).
    """
    code = 302 if request.method in ("GET", "HEAD") else 303
    config = current_app.config
    check = _Check(
        host_url=request.host_url,
        allowed_hosts=tuple(config.get("PATTERNS_REDIRECT_ALLOWED_HOSTS") or ()),
        require_https=bool(config.get("PATTERNS_REDIRECT_REQUIRE_HTTPS"))
        or request.is_secure,
    )
    here = URL(request.url)
    for candidate in _candidates(param, referrer):
        location = _checked_location(candidate, here, check)
        if location is not None:
            return redirect(location, code)
    return redirect(fallback, code)


@dataclass(frozen=True)
class _Check:
    host_url: str
    allowed_hosts: tuple[str, ...]
    require_https: bool

    def resolve(self, target: str) -> str | None:
        return resolve_safe_url(
            target,
            host_url=self.host_url,
            allowed_hosts=self.allowed_hosts,
            require_https=self.require_https,
        )


def _checked_location(candidate: str, here: URL, check: _Check) -> str | None:
    href = check.resolve(candidate)
    if href is None or _without_fragment(href) == _without_fragment(here.href):
        return None
    location = iri_to_uri(_location(URL(href), here))
    return location if check.resolve(location) is not None else None


def _resolve(
    target: str, host_url: str, hosts: list[_Host], require_https: bool
) -> str | None:
    url = _parse(target, host_url) if _reads_the_same_everywhere(target) else None
    if (
        url is None
        or url.protocol not in _DEFAULT_PORTS
        or url.username
        or url.password
    ):
        return None
    # "/.//evil.com" stays here, but its path "//evil.com" names a host as soon
    # as anything on the way writes it as a relative reference.
    if url.pathname.startswith("//"):
        return None
    if require_https and url.protocol == "http:" and _names_scheme_or_host(target):
        return None
    if not any(host.accepts(url) for host in hosts):
        return None
    return url.href


def _reads_the_same_everywhere(target: str) -> bool:
    """Refuse what browsers and other URL readers may take differently: hidden
    characters, backslashes, surrounding spaces, and odd authority forms."""
    if target != target.strip() or "\\" in target:
        return False
    if any(_is_hidden(char) for char in target):
        return False
    scheme = _SCHEME.match(target)
    if scheme is not None:
        if scheme.group().lower() not in _DEFAULT_PORTS:
            return False
        rest = target[scheme.end() :]
        # "http:host" and "http:/path" mean different things to different parsers.
        return rest.startswith("//") and _plain_authority(rest[2:])
    if target.startswith("//"):
        return _plain_authority(target[2:])
    return True


def _is_hidden(char: str) -> bool:
    """Control, format, unassigned and private-use characters, and every space
    but U+0020 (tab, line breaks, no-break space, ideographic space, ...)."""
    category = unicodedata.category(char)
    return category[0] == "C" or (category[0] == "Z" and char != " ")


def _plain_authority(rest: str) -> bool:
    """A non-empty host[:port] in plain ASCII, without user info or escapes.
    An empty one (``///host``, ``http:///host``) is how browsers get tricked
    into reading the next segment as the host."""
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    return (
        bool(authority)
        and authority.isascii()
        and "@" not in authority
        and "%" not in authority
    )


def _names_scheme_or_host(target: str) -> bool:
    return _SCHEME.match(target) is not None or target.startswith("//")


def _request_host(host_url: str) -> _Host:
    url = _parse(host_url)
    if url is None or url.protocol not in _DEFAULT_PORTS:
        raise ValueError(f"host_url is not an absolute http(s) URL: {host_url!r}")
    return _Host(url.hostname, int(url.port) if url.port else None)


def _allowed_hosts(allowed_hosts: str | t.Iterable[str]) -> list[_Host]:
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    return [_parse_host(entry) for entry in allowed_hosts]


def _parse_host(entry: str) -> _Host:
    """Parse an ``allowed_hosts`` entry: ``"example.com"``, ``"example.com:8443"``,
    ``"[::1]:8000"``; the host is normalized (lower case, IDNA) like a URL's."""
    match = _HOST_ENTRY.fullmatch(entry)
    url = _parse(f"http://{match.group(1)}/") if match else None
    if match is None or url is None:
        raise ValueError(f"Not a host or host:port in allowed_hosts: {entry!r}")
    port = match.group(2)
    return _Host(url.hostname, int(port) if port else None)


def _parse(url: str, base: str | None = None) -> URL | None:
    try:
        return URL(url, base)
    except ValueError:
        return None


def _candidates(param: str, referrer: bool) -> t.Iterator[str]:
    yield request.args.get(param, "")
    if request.method not in _SAFE_METHODS:
        yield request.form.get(param, "")
    if referrer:
        yield request.headers.get("Referer", "")


def _without_fragment(href: str) -> str:
    return href.partition("#")[0]


def _location(url: URL, here: URL) -> str:
    """A path for the request's own origin, the absolute URL otherwise."""
    if url.origin != here.origin:
        return url.href
    return url.pathname + url.search + url.hash
