"""Who may stream which channel: public channels by pattern, private ones by a
signed channel token."""

from __future__ import annotations

import typing as t
from fnmatch import fnmatchcase

from flask import abort
from flask import current_app
from flask import request

from ..tokens import dumps
from ..tokens import loads
from ..tokens import TokenError
from .events import check_channel

__all__ = [
    "authorize",
    "channel_token",
    "granted_channels",
]

_CHANNELS_PURPOSE = "flask_patterns.streams.channels"


def channel_token(*channels: str) -> str:
    """A signed token that grants the private ``channels`` until
    ``PATTERNS_STREAMS_TOKEN_MAX_AGE`` seconds have passed. Needs
    :class:`~flask_patterns.tokens.Tokens`."""
    for channel in channels:
        check_channel(channel)
    return dumps(_CHANNELS_PURPOSE, sorted(set(channels)))


def granted_channels() -> frozenset[str]:
    """The private channels the current request's stream token (the
    ``X-Stream-Token`` header, or the token cookie) grants: none without a
    token, or with one that is invalid or expired."""
    config = current_app.config
    token = request.headers.get("X-Stream-Token") or request.cookies.get(
        config["PATTERNS_STREAMS_TOKEN_COOKIE"]
    )
    if not token:
        return frozenset()
    max_age = config["PATTERNS_STREAMS_TOKEN_MAX_AGE"]
    try:
        granted = loads(_CHANNELS_PURPOSE, token, max_age=max_age)
    except TokenError:
        return frozenset()
    if not isinstance(granted, list):
        return frozenset()
    return frozenset(c for c in granted if isinstance(c, str))


def authorize(channels: t.Iterable[str]) -> None:
    """Refuse with 403, before the stream starts, a private channel (one that
    matches no ``PATTERNS_STREAMS_PUBLIC_CHANNELS`` pattern) that the
    request's token does not grant."""
    public = current_app.config["PATTERNS_STREAMS_PUBLIC_CHANNELS"]
    private = {c for c in channels if not any(fnmatchcase(c, p) for p in public)}
    refused = private - granted_channels()
    if refused:
        abort(
            403,
            description=(
                f"Channel {sorted(refused)[0]} is private: list it in"
                " PATTERNS_STREAMS_PUBLIC_CHANNELS, or send a token from"
                " EventStreams.channel_token() as the X-Stream-Token header or"
                f" the {current_app.config['PATTERNS_STREAMS_TOKEN_COOKIE']}"
                " cookie."
            ),
        )
