"""Password hashing that costs the same whether or not an account exists."""

from __future__ import annotations

import functools

from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

MIN_LENGTH = 8
MAX_LENGTH = 1024


def hash_password(password: str) -> str:
    """The hash to store for ``password`` (Werkzeug's default, scrypt)."""
    return generate_password_hash(password)


@functools.cache
def _dummy_hash() -> str:
    """A hash of the default method that matches no password anyone types,
    made once per process."""
    return generate_password_hash("no account has this password \x00")


def verify_password(stored: str | None, candidate: str) -> bool:
    """Whether ``candidate`` matches the ``stored`` hash. Without a stored hash
    (no such account, or one not activated yet) the candidate is checked against
    a dummy hash and refused: one hash is computed either way, so the time a
    login takes does not say whether the address has an account."""
    if stored is None:
        check_password_hash(_dummy_hash(), candidate)
        return False
    return check_password_hash(stored, candidate)


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be chosen, or ``None``."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    return None
