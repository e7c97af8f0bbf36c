"""OpenTelemetry spans of the library's work, when ``STOREFRONT_TRACING=true``.

The storefront does not depend on OpenTelemetry, so tracing stays off unless
asked for; the process that serves the app sets up the SDK (its exporter and
sampler), for example by running under ``opentelemetry-instrument``, which
also makes the request spans the library's spans go under.
"""

from __future__ import annotations

from flask import Flask

__all__ = ["init_tracing"]


def init_tracing(app: Flask) -> None:
    """Trace the units of work, the outbox and the streams of ``app`` with
    OpenTelemetry's global tracer provider, if ``TRACING`` is on."""
    if not app.config["TRACING"]:
        return
    try:
        from flask_patterns.tracing import Tracing
    except ImportError as error:
        raise RuntimeError(
            "STOREFRONT_TRACING=true needs the OpenTelemetry API: install"
            " flask-patterns[otel], and an SDK to export the spans"
            f" ({error})."
        ) from error
    Tracing(app)
