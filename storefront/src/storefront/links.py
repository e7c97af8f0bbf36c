"""Absolute links for mail, built from the configured public origin
(``STOREFRONT_PUBLIC_URL``), never from the request.

A link built from the request's ``Host`` (or ``X-Forwarded-Host``, or the host of
an absolute-form request target) goes wherever the sender of the request wants:
ask for a password reset with ``Host: evil.example`` and the victim's mail links
to evil.example, with the token in the path.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app
from flask import Flask

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class PublicOrigin:
    """The parts of ``STOREFRONT_PUBLIC_URL``."""

    scheme: str
    netloc: str
    hostname: str
    path: str

    @property
    def is_https(self) -> bool:
        return self.scheme == "https"

    def trusted_hosts(self) -> list[str]:
        """The ``Host`` values to accept: the public host, and on loopback the
        other names of loopback too (a developer's ``localhost:5000``)."""
        if self.hostname in _LOOPBACK:
            return list(_LOOPBACK)
        return [self.hostname]


def parse_public_url(url: str) -> PublicOrigin:
    """Check ``url`` (``http(s)://host[:port][/path]``) and split it.

    :raises ValueError: with the reason, for anything else.
    """
    parts = urlsplit(url)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "it must start with http:// or https://"
    elif not parts.hostname:
        problem = "it has no host"
    elif parts.username or parts.password or parts.query or parts.fragment:
        problem = "it must not carry a user, a query or a fragment"
    if problem is not None:
        raise ValueError(f"STOREFRONT_PUBLIC_URL={url!r} is not usable: {problem}.")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as error:
        raise ValueError(f"STOREFRONT_PUBLIC_URL={url!r}: {error}.") from None
    return PublicOrigin(
        scheme=parts.scheme,
        netloc=parts.netloc.lower(),
        hostname=parts.hostname.lower() if parts.hostname else "",
        path=parts.path.rstrip("/"),
    )


def public_origin(app: Flask | None = None) -> PublicOrigin:
    """The app's public origin."""
    return t.cast(PublicOrigin, (app or current_app).config["PUBLIC_ORIGIN"])


def public_url(endpoint: str, **values: t.Any) -> str:
    """The absolute URL of ``endpoint`` on the public origin, as ``url_for``
    would build it for a request to that origin."""
    origin = public_origin()
    adapter = current_app.url_map.bind(
        origin.netloc, script_name=origin.path or "/", url_scheme=origin.scheme
    )
    return adapter.build(endpoint, values, force_external=True)
