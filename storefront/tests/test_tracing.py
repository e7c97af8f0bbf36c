"""The storefront traces the library's work only when told to."""

from __future__ import annotations

import pytest

from flask_patterns import observe
from flask_patterns.tracing import observer_of


def test_tracing_is_off_by_default(app):
    assert app.config["TRACING"] is False
    assert "flask_patterns.tracing" not in app.extensions


def test_storefront_tracing_true_adds_the_observer(app_factory, monkeypatch):
    monkeypatch.setenv("STOREFRONT_TRACING", "true")
    app = app_factory()
    try:
        assert app.config["TRACING"] is True
        assert observer_of(app) in observe.observers()
        # The outbox worker and the relay build the same app: traced too.
        assert observer_of(app_factory()) is observer_of(app)
    finally:
        observe.remove_observer(observer_of(app))


def test_a_tracing_value_that_is_not_yes_or_no_stops_the_app(app_factory, monkeypatch):
    monkeypatch.setenv("STOREFRONT_TRACING", "sometimes")
    with pytest.raises(ValueError, match="STOREFRONT_TRACING='sometimes'"):
        app_factory()
