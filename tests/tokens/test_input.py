"""Malformed input is always ``TokenInvalid``, checked before anything is
decoded; ``max_age`` must be a finite number."""

from __future__ import annotations

import base64

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer
from itsdangerous import URLSafeSerializer

from flask_patterns.tokens import _serializer
from flask_patterns.tokens import dumps
from flask_patterns.tokens import loads
from flask_patterns.tokens import TokenInvalid
from flask_patterns.tokens import Tokens

from .conftest import ALPHABET
from .conftest import HOUR

# Malformed input is always TokenInvalid


@pytest.fixture
def signed(app):
    """Correctly signed tokens whose content was not made by ``dumps``."""
    serializer = _serializer("activate")
    signer = serializer.make_signer(serializer.salt)

    def sign(raw: bytes) -> str:
        return signer.sign(raw).decode("ascii")

    return serializer, sign


def garbage_tokens(token: str) -> list[object]:
    return [
        "",
        ".",
        "..",
        "...",
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "!!!.@@@.###",
        "====.====.====",
        token[:-1],
        token[: len(token) // 2],
        token.rsplit(".", 1)[0],
        token + "x",
        token + ".",
        "." + token,
        token.replace(".", ""),
        token.upper(),
        token + " ",
        token.replace(".", "\x00", 1),
        "é" + token,
        "\udc80",
        "x" * 100_000,
        "." * 5000,
        None,
        42,
        4.2,
        True,
        [],
        {},
        [token],
        b"garbage",
        b"\xff\xfe\xfd",
        token.encode("ascii"),
        bytearray(b"abc"),
    ]


def test_garbage_of_every_shape_is_invalid(app):
    token = dumps("activate", 42, fingerprint="state")
    for garbage in garbage_tokens(token):
        with pytest.raises(TokenInvalid):
            loads("activate", garbage, max_age=HOUR, fingerprint="state")  # type: ignore[arg-type]


def test_signed_payloads_of_the_wrong_shape_are_invalid(signed):
    serializer, _ = signed
    shapes = [{"a": 1}, [], [1, 2, 3], [1, 5], [1, None], [1, "é"], "text", 42]
    for shape in shapes:
        with pytest.raises(TokenInvalid):
            loads("activate", serializer.dumps(shape), max_age=HOUR, fingerprint="x")


def test_signed_payloads_that_do_not_decode_are_invalid(signed):
    _, sign = signed
    for raw in [b"{not json", b"!!!", b".eJzLSM3JyQcABiwCFQ", b".AAAA", b"[1"]:
        with pytest.raises(TokenInvalid):
            loads("activate", sign(raw), max_age=HOUR)


def test_a_token_from_an_untimed_serializer_with_the_same_key_is_invalid(app):
    untimed = URLSafeSerializer(
        "current-key", salt="flask_patterns.tokens:activate"
    ).dumps([42])
    with pytest.raises(TokenInvalid):
        loads("activate", untimed, max_age=HOUR)


def test_a_token_signed_by_a_plain_signer_is_invalid(app):
    plain = Signer("current-key").sign(b"[42]").decode()
    with pytest.raises(TokenInvalid):
        loads("activate", plain, max_age=HOUR)


@given(garbage=st.text(max_size=200) | st.binary(max_size=200))
def test_any_string_or_bytes_loads_as_invalid_and_never_raises_otherwise(garbage):
    app = Flask("fuzz")
    app.config["SECRET_KEY"] = "current-key"
    Tokens(app)
    with app.app_context(), pytest.raises(TokenInvalid):
        loads("activate", garbage, max_age=HOUR)  # type: ignore[arg-type]


@given(value=st.text(max_size=50), fingerprint=st.text(max_size=50))
def test_any_value_and_fingerprint_round_trip(value, fingerprint):
    app = Flask("round-trip")
    app.config["SECRET_KEY"] = "current-key"
    Tokens(app)
    with app.app_context():
        token = dumps("p", value, fingerprint=fingerprint)
        assert loads("p", token, max_age=HOUR, fingerprint=fingerprint) == value


# The exact shape, before anything is decoded


def test_characters_outside_the_alphabet_inside_a_signature_are_invalid(app):
    token = dumps("activate", 42)
    payload, stamp, signature = token.split(".")
    # Python's base64 decoder skips these; the token must not load anyway.
    for forged in (
        f"{payload}.{stamp}.{signature[:10]}!!!!{signature[10:]}",
        f"{payload}.{stamp}.{signature}====",
        f"{payload}.{stamp}.{signature[:20]}\n{signature[20:]}",
        f"{payload}!.{stamp}.{signature}",
    ):
        with pytest.raises(TokenInvalid, match="malformed"):
            loads("activate", forged, max_age=HOUR)


def test_a_non_canonical_last_digit_is_invalid(app):
    token = dumps("activate", 42)
    body, signature = token.rsplit(".", 1)
    # A 43-digit signature carries 2 spare bits in its last digit: changing only
    # them leaves the decoded bytes as they were.
    last = ALPHABET.index(signature[-1])
    twin = ALPHABET[last ^ 0b01]
    assert base64.urlsafe_b64decode(signature + "=") == base64.urlsafe_b64decode(
        signature[:-1] + twin + "="
    )
    with pytest.raises(TokenInvalid, match="malformed"):
        loads("activate", f"{body}.{signature[:-1]}{twin}", max_age=HOUR)


def test_a_compressed_token_keeps_loading(app):
    value = "x" * 500
    token = dumps("activate", value)
    assert token.startswith(".")
    assert loads("activate", token, max_age=HOUR) == value


@pytest.mark.parametrize("max_age", [float("nan"), float("inf"), -1, -0.5])
def test_max_age_must_be_finite_and_not_negative(app, max_age):
    with pytest.raises(ValueError, match="max_age"):
        loads("activate", dumps("activate", 1), max_age=max_age)


@pytest.mark.parametrize("max_age", ["3600", None, True])
def test_max_age_must_be_a_number(app, max_age):
    with pytest.raises(TypeError, match="max_age"):
        loads("activate", dumps("activate", 1), max_age=max_age)  # type: ignore[arg-type]
