"""Signed, expiring, purpose-bound tokens for links sent by mail: account
activation, password reset, e-mail change, stream channel access.

A token is an itsdangerous ``URLSafeTimedSerializer`` token signed with the app's
``SECRET_KEY`` (``SECRET_KEY_FALLBACKS`` are accepted, so keys can be rotated). Each
purpose has its own salt, so a token made for one purpose never loads for another.
A *fingerprint* of the state that the action changes (a password hash, the last
login time, the current e-mail address) makes a link single-use without a token
table: once the action ran, the state differs and the token stops loading.

Every failure is a :class:`TokenError`: :class:`TokenExpired` for a token that
would be valid but is too old, :class:`TokenInvalid` for anything else. See
``docs/tokens.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from flask import current_app
from flask import Flask
from itsdangerous import BadData
from itsdangerous import URLSafeTimedSerializer

from ._registry import refuse_second
from ._registry import register
from ._registry import state_of

__all__ = [
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "Tokens",
    "dumps",
    "loads",
]

_NAME = "tokens"
_SALT_PREFIX = "flask_patterns.tokens:"
_FINGERPRINT_BYTES = 16
#: What ``URLSafeTimedSerializer`` makes: a payload (led by ``.`` when
#: compressed), a timestamp and a SHA-256 signature, each in unpadded URL-safe
#: base64. Python's decoder skips characters outside the alphabet, so a token
#: is checked against this before it is decoded.
_SHAPE = re.compile(r"\.?([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")

Fingerprint = str | bytes | t.Callable[[t.Any], str | bytes]
MaxAge = int | float | timedelta


class TokenError(Exception):
    """A token could not be loaded."""


class TokenExpired(TokenError):
    """The token is genuine and otherwise valid, but older than ``max_age``.

    Only a token that would load if it were younger gets this error, so it is safe
    to answer with "this link has expired, send a new one?".
    """


class TokenInvalid(TokenError):
    """The token is malformed, tampered with, made for another purpose or with an
    unknown key, or bound to state that has changed since (a used link)."""


@dataclass(frozen=True)
class _TokensState:
    max_length: int


class Tokens:
    """Make and check signed tokens with the current app's secret keys.

    :param app: register on this app at once, or later with :meth:`init_app`.

    Configuration: ``SECRET_KEY`` signs, ``SECRET_KEY_FALLBACKS`` (oldest first)
    are still accepted; ``PATTERNS_TOKEN_MAX_LENGTH`` (default 4096) bounds the
    length of a token, both made and loaded.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``."""
        refuse_second(app, _NAME, what="Tokens")
        app.config.setdefault("PATTERNS_TOKEN_MAX_LENGTH", 4096)
        max_length = int(app.config["PATTERNS_TOKEN_MAX_LENGTH"])
        register(app, _NAME, _TokensState(max_length=max_length), what="Tokens")

    def dumps(
        self, purpose: str, value: t.Any, *, fingerprint: Fingerprint | None = None
    ) -> str:
        """Same as the module's :func:`dumps`."""
        return dumps(purpose, value, fingerprint=fingerprint)

    def loads(
        self,
        purpose: str,
        token: str,
        *,
        max_age: MaxAge,
        fingerprint: Fingerprint | None = None,
    ) -> t.Any:
        """Same as the module's :func:`loads`."""
        return loads(purpose, token, max_age=max_age, fingerprint=fingerprint)


def dumps(purpose: str, value: t.Any, *, fingerprint: Fingerprint | None = None) -> str:
    """Sign ``value`` for ``purpose`` with the current app's ``SECRET_KEY``.

    The token is URL-safe. Its payload is readable by anyone who has it (signed,
    not encrypted): put an id in it, never a secret.

    :param purpose: what the token is for, such as ``"activate"``; a token only
        loads for the purpose it was made for.
    :param value: any JSON-serializable value (tuples come back as lists).
    :param fingerprint: the state the action will change, as ``str`` or ``bytes``
        (for a password reset: the password hash and the last login time), or a
        callable that returns it for ``value``. Only a short keyed hash of it goes
        into the token.
    :raises RuntimeError: without a ``SECRET_KEY``, or outside an app with
        :class:`Tokens` registered.
    """
    state = _state()
    secret = _signing_keys()[-1]
    payload = [value]
    if fingerprint is not None:
        current = _current_state(fingerprint, value)
        payload.append(_fingerprint_digest(secret, purpose, current))
    token = _serializer(purpose).dumps(payload)
    if len(token) > state.max_length:
        raise ValueError(
            f"The token is {len(token)} characters long, over"
            f" PATTERNS_TOKEN_MAX_LENGTH ({state.max_length}): sign less data."
        )
    return token


def loads(
    purpose: str,
    token: str,
    *,
    max_age: MaxAge,
    fingerprint: Fingerprint | None = None,
) -> t.Any:
    """Check ``token`` and return the value it was made with.

    The checks run in this order: the signature (so a tampered token is always
    :class:`TokenInvalid`, even when it is also old), the payload, the
    fingerprint, then the age.

    :param purpose: the purpose the token must have been made for.
    :param max_age: the oldest token accepted, in seconds or as a ``timedelta``.
    :param fingerprint: the current state, as passed to :func:`dumps`; required
        when the token was made with one, refused when it was not. A callable is
        called with the token's value (only once the signature is known to be
        good), so the state can be looked up by the id the token carries.
    :raises TokenExpired: the token is valid but older than ``max_age``.
    :raises TokenInvalid: for every other problem, including input that is not a
        token at all.
    """
    state = _state()
    seconds = _seconds(max_age)
    if not isinstance(token, str) or not token.isascii():
        raise TokenInvalid("Not a token.")
    if len(token) > state.max_length:
        raise TokenInvalid("The token is too long.")
    _check_shape(token)
    value, digest, signed_at = _verify(purpose, token)
    _check_fingerprint(purpose, value, digest, fingerprint)
    age = int(time.time()) - int(signed_at.timestamp())
    if age < 0:
        raise TokenInvalid("The token was signed in the future.")
    if age > seconds:
        raise TokenExpired(f"The token is {age} seconds old, over {seconds:g}.")
    return value


def _state() -> _TokensState:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return state_of(app, _NAME, _TokensState, what="Tokens")


def _signing_keys() -> list[bytes]:
    """The app's keys, oldest first: itsdangerous signs with the last one."""
    secret = current_app.config.get("SECRET_KEY")
    if not secret:
        raise RuntimeError(
            "Signed tokens need a secret: set SECRET_KEY in the app's config."
        )
    fallbacks = current_app.config.get("SECRET_KEY_FALLBACKS") or []
    return [_bytes(key) for key in [*fallbacks, secret] if key]


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _current_state(fingerprint: Fingerprint, value: t.Any) -> bytes:
    state = fingerprint(value) if callable(fingerprint) else fingerprint
    if not isinstance(state, str | bytes):
        raise TypeError("A fingerprint must be str or bytes.")
    return _bytes(state)


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("A token's purpose must be a non-empty string.")
    return URLSafeTimedSerializer(
        _signing_keys(),
        salt=_SALT_PREFIX + purpose,
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
    )


def _seconds(max_age: MaxAge) -> float:
    if isinstance(max_age, bool) or not isinstance(max_age, int | float | timedelta):
        raise TypeError("max_age must be a number of seconds or a timedelta.")
    seconds = (
        max_age.total_seconds() if isinstance(max_age, timedelta) else float(max_age)
    )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"max_age must be a finite, non-negative number of seconds, not {max_age}."
        )
    return seconds


def _check_shape(token: str) -> None:
    """Refuse anything but the three base64 parts a token is made of, each in
    its one canonical spelling: the decoder would otherwise skip foreign
    characters and ignore the spare bits of a last digit, so that many strings
    would load as the same token."""
    match = _SHAPE.fullmatch(token)
    if match is None or not all(map(_canonical, match.groups())):
        raise TokenInvalid("The token is malformed.")


def _canonical(part: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == part


def _verify(purpose: str, token: str) -> tuple[t.Any, str | None, datetime]:
    """Check the signature and the shape of the payload; return the value, the
    fingerprint digest (if any) and the signing time."""
    try:
        payload, signed_at = _serializer(purpose).loads(token, return_timestamp=True)
    except BadData:
        raise TokenInvalid(
            "The token is malformed or its signature is wrong."
        ) from None
    if not isinstance(payload, list) or len(payload) not in (1, 2):
        raise TokenInvalid("The token's payload has the wrong shape.")
    digest = payload[1] if len(payload) == 2 else None
    if digest is not None and not (isinstance(digest, str) and digest.isascii()):
        raise TokenInvalid("The token's fingerprint has the wrong type.")
    return payload[0], digest, t.cast(datetime, signed_at)


def _fingerprint_digest(key: bytes, purpose: str, state: bytes) -> str:
    """A short keyed hash of ``state``, so the token (which anyone holding it can
    read) reveals nothing of the state it is bound to."""
    name = purpose.encode("utf-8")
    message = len(name).to_bytes(4, "big") + name + state
    digest = hmac.new(key, message, hashlib.sha256).digest()[:_FINGERPRINT_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_fingerprint(
    purpose: str, value: t.Any, digest: str | None, fingerprint: Fingerprint | None
) -> None:
    if digest is None and fingerprint is None:
        return
    if digest is None or fingerprint is None:
        raise TokenInvalid("The token's fingerprint does not match.")
    state = _current_state(fingerprint, value)
    # The digest may have been made with any of the accepted keys.
    matches = [
        hmac.compare_digest(digest, _fingerprint_digest(key, purpose, state))
        for key in _signing_keys()
    ]
    if not any(matches):
        raise TokenInvalid("The token's fingerprint does not match.")
