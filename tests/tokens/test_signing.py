"""Tokens: round trips, purposes, expiry, key rotation, single use through a
fingerprint, and the extension."""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import timedelta

import pytest
from flask import Flask

from flask_patterns.tokens import dumps
from flask_patterns.tokens import loads
from flask_patterns.tokens import TokenError
from flask_patterns.tokens import TokenExpired
from flask_patterns.tokens import TokenInvalid
from flask_patterns.tokens import Tokens

from .conftest import HOUR
from .conftest import tamper

# Round trips, purposes, the shape of a token


@pytest.mark.parametrize(
    "value",
    [42, "user@example.com", {"id": 7, "email": "a@example.com"}, [1, "two"], None],
)
def test_a_token_loads_the_value_it_was_made_with(app, value):
    token = dumps("activate", value)
    assert loads("activate", token, max_age=HOUR) == value


def test_tuples_come_back_as_lists(app):
    assert loads("activate", dumps("activate", (1, 2)), max_age=HOUR) == [1, 2]


def test_tokens_are_url_safe_and_short(app):
    token = dumps("activate", 12345)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)
    assert len(token) < 64
    bound = dumps("reset", 12345, fingerprint="$argon2id$v=19$m=65536...|2026-01-01")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", bound)
    assert len(bound) < 96


def test_a_token_for_one_purpose_never_loads_for_another(app):
    token = dumps("activate", 42)
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR)
    with pytest.raises(TokenInvalid):
        loads("activate ", token, max_age=HOUR)
    assert dumps("reset-password", 42) != token


def test_the_extension_object_makes_and_loads_tokens_too(app):
    tokens = Tokens()
    token = tokens.dumps("activate", 42, fingerprint="x")
    assert tokens.loads("activate", token, max_age=HOUR, fingerprint="x") == 42
    assert loads("activate", token, max_age=HOUR, fingerprint="x") == 42


def test_tampering_with_any_character_makes_the_token_invalid(app):
    token = dumps("activate", {"user": 42}, fingerprint="state")
    for index in range(len(token)):
        with pytest.raises(TokenInvalid):
            loads("activate", tamper(token, index), max_age=HOUR, fingerprint="state")


def test_a_payload_changed_and_re_encoded_is_invalid(app):
    token = dumps("activate", 42)
    _, rest = token.split(".", 1)
    forged = base64.urlsafe_b64encode(b"[43]").rstrip(b"=").decode()
    with pytest.raises(TokenInvalid):
        loads("activate", f"{forged}.{rest}", max_age=HOUR)


# Expiry


def test_a_token_loads_until_max_age_and_expires_after(app, clock):
    token = dumps("activate", 42)
    clock.advance(HOUR)
    assert loads("activate", token, max_age=HOUR) == 42
    clock.advance(1)
    with pytest.raises(TokenExpired):
        loads("activate", token, max_age=HOUR)


def test_max_age_may_be_a_timedelta(app, clock):
    token = dumps("activate", 42)
    clock.advance(2 * 24 * HOUR)
    assert loads("activate", token, max_age=timedelta(days=2)) == 42
    with pytest.raises(TokenExpired):
        loads("activate", token, max_age=timedelta(days=1, hours=23))


def test_expired_and_invalid_are_distinct_token_errors(app, clock):
    assert issubclass(TokenExpired, TokenError)
    assert issubclass(TokenInvalid, TokenError)
    assert issubclass(TokenError, Exception)
    assert not issubclass(TokenExpired, TokenInvalid)
    assert not issubclass(TokenInvalid, TokenExpired)


def test_an_expired_token_that_was_tampered_with_is_invalid_not_expired(app, clock):
    token = dumps("activate", 42)
    clock.advance(10 * HOUR)
    with pytest.raises(TokenExpired):
        loads("activate", token, max_age=HOUR)
    for index in range(len(token)):
        with pytest.raises(TokenInvalid):
            loads("activate", tamper(token, index), max_age=HOUR)


def test_an_expired_token_for_another_purpose_is_invalid(app, clock):
    token = dumps("activate", 42)
    clock.advance(10 * HOUR)
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR)


def test_an_expired_token_whose_state_changed_is_invalid(app, clock):
    token = dumps("reset-password", 42, fingerprint="old-hash")
    clock.advance(10 * HOUR)
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR, fingerprint="new-hash")


def test_a_token_signed_in_the_future_is_invalid(app, clock):
    token = dumps("activate", 42)
    clock.advance(-60)
    with pytest.raises(TokenInvalid, match="future"):
        loads("activate", token, max_age=HOUR)


def test_max_age_must_not_be_negative(app):
    with pytest.raises(ValueError, match="max_age"):
        loads("activate", dumps("activate", 1), max_age=-1)


# Key rotation


def test_a_token_signed_with_an_old_key_loads_while_that_key_is_a_fallback(app):
    old_token = dumps("activate", 42)
    app.config["SECRET_KEY"] = "new-key"
    with pytest.raises(TokenInvalid):
        loads("activate", old_token, max_age=HOUR)
    app.config["SECRET_KEY_FALLBACKS"] = ["older-key", "current-key"]
    assert loads("activate", old_token, max_age=HOUR) == 42


def test_new_tokens_are_signed_with_the_current_key_not_a_fallback(app):
    app.config["SECRET_KEY"] = "new-key"
    app.config["SECRET_KEY_FALLBACKS"] = ["older-key", "current-key"]
    token = dumps("activate", 42)
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert loads("activate", token, max_age=HOUR) == 42
    app.config["SECRET_KEY"] = "current-key"
    with pytest.raises(TokenInvalid):
        loads("activate", token, max_age=HOUR)


def test_a_bound_token_signed_with_an_old_key_keeps_its_fingerprint(app):
    token = dumps("reset-password", 42, fingerprint="hash|login")
    app.config["SECRET_KEY"] = b"new-key-as-bytes"
    app.config["SECRET_KEY_FALLBACKS"] = ["current-key"]
    assert loads("reset-password", token, max_age=HOUR, fingerprint="hash|login") == 42
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR, fingerprint="hash|later")


def test_a_missing_secret_key_is_a_clear_error(app):
    token = dumps("activate", 42)
    app.config["SECRET_KEY"] = None
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        dumps("activate", 42)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        loads("activate", token, max_age=HOUR)
    app.config["SECRET_KEY"] = ""
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        dumps("activate", 42)


# Single use through a fingerprint of the state the action changes


def test_a_fingerprint_change_kills_the_token(app):
    user = {"id": 42, "password": "$argon2id$first", "last_login": "2026-01-01T10:00"}

    def state() -> str:
        return f"{user['password']}|{user['last_login']}"

    token = dumps("reset-password", user["id"], fingerprint=state())
    assert loads("reset-password", token, max_age=HOUR, fingerprint=state()) == 42
    user["password"] = "$argon2id$second"  # the reset happened
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR, fingerprint=state())


def test_a_login_in_between_kills_a_reset_token(app):
    token = dumps("reset-password", 42, fingerprint="hash|2026-01-01T10:00")
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR, fingerprint="hash|2026-01-02")


def test_bytes_and_str_fingerprints_are_the_same_state(app):
    token = dumps("activate", 42, fingerprint=b"inactive")
    assert loads("activate", token, max_age=HOUR, fingerprint="inactive") == 42


def test_a_bound_token_needs_its_fingerprint_and_an_unbound_one_refuses_one(app):
    bound = dumps("activate", 42, fingerprint="inactive")
    unbound = dumps("activate", 42)
    with pytest.raises(TokenInvalid):
        loads("activate", bound, max_age=HOUR)
    with pytest.raises(TokenInvalid):
        loads("activate", unbound, max_age=HOUR, fingerprint="inactive")


def test_the_token_does_not_reveal_the_fingerprint(app):
    secret_state = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$hash"
    token = dumps("reset-password", 42, fingerprint=secret_state)
    encoded = token.split(".")[0]
    payload = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    assert payload[0] == 42
    assert secret_state not in json.dumps(payload)
    assert len(payload[1]) == 22


def test_a_callable_fingerprint_gets_the_value_and_returns_the_state(app):
    states = {7: "hash-a|login-1", 8: "hash-b|login-1"}
    seen = []

    def state_of(user_id):
        seen.append(user_id)
        return states[user_id]

    token = dumps("reset-password", 7, fingerprint=state_of)
    assert loads("reset-password", token, max_age=HOUR, fingerprint=state_of) == 7
    assert loads("reset-password", token, max_age=HOUR, fingerprint=states[7]) == 7
    states[7] = "hash-c|login-1"
    with pytest.raises(TokenInvalid):
        loads("reset-password", token, max_age=HOUR, fingerprint=state_of)
    assert seen == [7, 7, 7]


def test_a_callable_fingerprint_is_not_called_for_a_forged_token(app):
    seen = []
    token = dumps("reset-password", 7, fingerprint="s")
    with pytest.raises(TokenInvalid):
        loads("reset-password", tamper(token, 0), max_age=HOUR, fingerprint=seen.append)
    assert seen == []


def test_a_fingerprint_must_be_str_or_bytes(app):
    with pytest.raises(TypeError, match="fingerprint"):
        dumps("activate", 42, fingerprint=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fingerprint"):
        dumps("activate", 42, fingerprint=lambda value: value)


# The extension


def test_tokens_need_the_extension_and_refuse_a_second_registration(app):
    with pytest.raises(RuntimeError, match="already registered"):
        Tokens(app)
    other = Flask("other")
    other.config["SECRET_KEY"] = "k"
    with other.app_context(), pytest.raises(RuntimeError, match="init_app"):
        dumps("activate", 42)


def test_the_extension_keeps_no_app(app):
    import gc
    import weakref

    other = Flask("another")
    tokens = Tokens(other)
    gone = weakref.ref(other)
    del other
    gc.collect()
    assert gone() is None, "the extension object kept the app alive"
    assert tokens is not None
    assert "flask_patterns.tokens" in app.extensions


def test_the_maximum_length_is_configurable_and_enforced_both_ways(app):
    assert app.config["PATTERNS_TOKEN_MAX_LENGTH"] == 4096
    short = Flask("short")
    short.config.update(SECRET_KEY="current-key", PATTERNS_TOKEN_MAX_LENGTH=100)
    Tokens(short)
    incompressible = secrets.token_urlsafe(200)
    long_token = dumps("activate", incompressible)  # made by the default app
    with short.app_context():
        with pytest.raises(ValueError, match="PATTERNS_TOKEN_MAX_LENGTH"):
            dumps("activate", incompressible)
        with pytest.raises(TokenInvalid, match="too long"):
            loads("activate", long_token, max_age=HOUR)


def test_a_purpose_must_be_a_non_empty_string(app):
    with pytest.raises(ValueError, match="purpose"):
        dumps("", 42)
