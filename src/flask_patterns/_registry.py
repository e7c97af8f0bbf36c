"""The one shape every extension of this package keeps its per-app state in:
``app.extensions["flask_patterns.<name>"]`` holds the extension's state object,
registered once and read through :func:`state_of`."""

from __future__ import annotations

import typing as t

from flask import Flask

S = t.TypeVar("S")


def refuse_second(app: Flask, name: str, *, what: str) -> None:
    """Raise if extension ``name`` is registered on ``app`` already: call it
    first in ``init_app``, before anything is built.

    :param what: the extension's class name, for the error message.
    """
    if is_registered(app, name):
        raise RuntimeError(f"{what} is already registered on this app.")


def register(app: Flask, name: str, state: object, *, what: str) -> None:
    """Keep ``state`` as the state of extension ``name`` on ``app``.

    :raises RuntimeError: the extension is registered on ``app`` already.
    """
    refuse_second(app, name, what=what)
    app.extensions[f"flask_patterns.{name}"] = state


def is_registered(app: Flask, name: str) -> bool:
    """Whether extension ``name`` is registered on ``app``."""
    return f"flask_patterns.{name}" in app.extensions


def state_of(app: Flask, name: str, kind: type[S], *, what: str) -> S:
    """The state of extension ``name`` on ``app``.

    :raises RuntimeError: it is not registered there, with how to fix it.
    """
    try:
        state = app.extensions[f"flask_patterns.{name}"]
    except KeyError:
        raise RuntimeError(
            f"{what} is not registered on this app: call init_app(app) on it first."
        ) from None
    if not isinstance(state, kind):  # pragma: no cover - another package's value
        raise RuntimeError(f"app.extensions holds something else for {what}.")
    return state
