"""``GET /metrics``: the Prometheus metrics of every process of this machine
(web pool, stream pool, worker, relay) when they share
``PROMETHEUS_MULTIPROC_DIR``, as ``deploy/`` makes them.

Only a scraper on this machine (a loopback address) or one that sends
``Authorization: Bearer <STOREFRONT_METRICS_TOKEN>`` gets them; anyone else
is handed to the app, which has no such page: a 404, so the endpoint is not
advertised. nginx answers 404 for ``/metrics`` itself. The metrics are served
before the app's host check, since a scraper asks for the pool's own address
(``127.0.0.1:8001``), not the public host, and cannot choose its ``Host``.
"""

from __future__ import annotations

import hmac
import ipaddress
import typing as t

from flask import Flask
from werkzeug.wrappers import Response

from flask_patterns.metrics import Metrics

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["MetricsEndpoint", "init_app", "is_loopback", "metrics"]

metrics = Metrics()


def init_app(app: Flask) -> None:
    """Record the library's metrics in this process and serve ``/metrics``.
    Call it before ``ProxyFix`` wraps the app, so that the client's address is
    the one the proxy forwarded."""
    metrics.init_app(app)
    app.wsgi_app = MetricsEndpoint(app, app.wsgi_app)  # type: ignore[method-assign]


class MetricsEndpoint:
    """Answers ``GET /metrics`` of a caller that may scrape, in an app context
    of ``app``; hands every other request to ``wsgi_app``."""

    def __init__(self, app: Flask, wsgi_app: WSGIApplication) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        if not self._scrape(environ):
            return self.wsgi_app(environ, start_response)
        with self.app.app_context():
            body, content_type = metrics.exposition()
        response = Response(body, content_type=content_type)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response(environ, start_response)

    def _scrape(self, environ: WSGIEnvironment) -> bool:
        if environ.get("PATH_INFO") != "/metrics":
            return False
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        return is_loopback(environ.get("REMOTE_ADDR")) or self._holds_token(
            environ.get("HTTP_AUTHORIZATION", "")
        )

    def _holds_token(self, given: str) -> bool:
        token = self.app.config.get("METRICS_TOKEN")
        return bool(token) and hmac.compare_digest(
            given.encode("latin-1", "replace"), f"Bearer {token}".encode()
        )


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` is one of this machine's loopback addresses
    (127.0.0.0/8, ``::1``, or IPv4 loopback mapped into IPv6)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
