"""The app, clock and helpers the token tests share."""

from __future__ import annotations

import time

import pytest
from flask import Flask

from flask_patterns.tokens import Tokens

HOUR = 3600
NOW = 1_800_000_000.0
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def app():
    app = Flask("tokens")
    app.config["SECRET_KEY"] = "current-key"
    Tokens(app)
    with app.app_context():
        yield app


@pytest.fixture
def clock(monkeypatch):
    """Freeze ``time.time``, which itsdangerous reads to stamp and age tokens."""

    class Clock:
        now = NOW

        def advance(self, seconds: float) -> None:
            self.now += seconds

    frozen = Clock()
    monkeypatch.setattr(time, "time", lambda: frozen.now)
    return frozen


def tamper(token: str, index: int) -> str:
    """Change one character so that the bytes it encodes change: flip the top bit
    of a base64 digit (always significant), or replace a separator."""
    char = token[index]
    flipped = ALPHABET[ALPHABET.index(char) ^ 0b100000] if char in ALPHABET else "A"
    return token[:index] + flipped + token[index + 1 :]
