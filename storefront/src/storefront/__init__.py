"""The storefront: the reference shop built on flask-patterns."""

from __future__ import annotations

import os
import secrets
import typing as t

from flask import Flask

from . import errors
from . import security
from .links import parse_public_url
from .logs import configure_logging
from .metrics import init_app as init_metrics
from .tracing import init_tracing

__all__ = ["create_app"]


def create_app(config: t.Mapping[str, t.Any] | None = None) -> Flask:
    """Build the storefront app.

    :param config: settings applied last, over the defaults and the
        ``STOREFRONT_*`` environment variables (tests use this).
    """
    app = Flask(__name__, instance_relative_config=True)
    configure(app, config)
    configure_logging(app)
    security.init_app(app)
    init_extensions(app)
    init_tracing(app)
    init_metrics(app)
    register_blueprints(app)
    errors.init_app(app)
    register_commands(app)
    trust_proxies(app)
    warn_about_mail(app)
    return app


def warn_about_mail(app: Flask) -> None:
    """Say at start-up when mail can go nowhere, rather than letting sign-ups
    wait for an activation mail that never comes."""
    from .mail import mail_transport

    if mail_transport(app) is None:
        app.logger.warning(
            "No STOREFRONT_SMTP_URL is set and the development mailbox is off:"
            " mail (activation and reset links included) stays queued in the"
            " outbox until an SMTP server is configured. Set STOREFRONT_SMTP_URL,"
            " or STOREFRONT_DEV_MAILBOX=true on a machine only you can reach."
        )


def trust_proxies(app: Flask) -> None:
    """Behind ``PROXY_HOPS`` reverse proxies (``STOREFRONT_PROXY_HOPS``; nginx in
    ``deploy/`` is one), take the client's address, scheme and host from the
    ``X-Forwarded-*`` headers they set; with 0, ignore those headers, which any
    client can send."""
    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )


def configure(app: Flask, config: t.Mapping[str, t.Any] | None) -> None:
    app.config.from_mapping(
        DATABASE_URL="sqlite:///storefront.sqlite",
        REDIS_URL=None,
        SECRET_KEY=None,
        SMTP_URL=None,
        # The origin every link in mail is built from; never the request's Host.
        PUBLIC_URL="http://127.0.0.1:5000",
        # The development mailbox outside debug (it shows every reset link).
        DEV_MAILBOX=False,
        # text, or json: one JSON object per line; either names the request id.
        LOG_FORMAT="text",
        # OpenTelemetry spans of the library's work (the process sets up the SDK).
        TRACING=False,
        # Lets a caller with "Authorization: Bearer <token>" see why /readyz fails.
        READYZ_TOKEN=None,
        # Lets a caller with "Authorization: Bearer <token>" read /metrics from
        # anywhere; without it, only loopback may.
        METRICS_TOKEN=None,
        MAIL_FROM="Storefront <shop@localhost>",
        ACTIVATION_MAX_AGE=2 * 24 * 3600,
        RESET_MAX_AGE=3600,
        # Forms are small; the image upload sets its own, larger limit.
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.from_prefixed_env("STOREFRONT")
    if config is not None:
        app.config.from_mapping(config)
    app.config.setdefault("PATTERNS_DATABASE_URL", app.config["DATABASE_URL"])
    app.config.setdefault("PATTERNS_STREAMS_PUBLIC_CHANNELS", ["activity"])
    if not app.config["SECRET_KEY"]:
        app.config["SECRET_KEY"] = _instance_secret_key(app)
    app.config["PUBLIC_ORIGIN"] = parse_public_url(str(app.config["PUBLIC_URL"]))
    app.config["DEV_MAILBOX"] = flag("DEV_MAILBOX", app.config["DEV_MAILBOX"])
    app.config["TRACING"] = flag("TRACING", app.config["TRACING"])
    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", app.config["REDIS_URL"] or "memory://"
    )
    # While the storage does not answer, count in this process's memory rather
    # than fail the request (a login would be a 500); Flask-Limiter goes back to
    # the storage once a periodic check finds it answering again.
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    if str(app.config["RATELIMIT_STORAGE_URI"]).startswith(("redis", "valkey")):
        # A Redis that hangs then holds up the request that falls back, and
        # each later health check, for these rather than redis-py's 5 s.
        app.config.setdefault(
            "RATELIMIT_STORAGE_OPTIONS",
            {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        )


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def flag(name: str, value: object) -> bool:
    """A yes/no setting: a bool, or one of the usual words in any case.
    Anything else stops the app: ``STOREFRONT_DEV_MAILBOX=False`` must not
    turn the mailbox on because a non-empty string is true."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, int | str) else None
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(
        f"STOREFRONT_{name}={value!r} is not a yes/no value: use true or false."
    )


def _instance_secret_key(app: Flask) -> str:
    """A random key kept in the instance folder, so that sessions and signed links
    survive restarts on a machine where ``STOREFRONT_SECRET_KEY`` is not set."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    try:
        with open(path) as file:
            return file.read().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(key)
        return key


def init_extensions(app: Flask) -> None:
    from flask_patterns.streams import MemoryBroker
    from flask_patterns.streams import RedisBroker

    from . import logins
    from .extensions import assets
    from .extensions import bodies
    from .extensions import csrf
    from .extensions import db
    from .extensions import limiter
    from .extensions import outbox
    from .extensions import request_ids
    from .extensions import responses
    from .extensions import streams
    from .extensions import tokens
    from .live import stream_client
    from .mail import register_handler as register_mail_handler

    request_ids.init_app(app)
    db.init_app(app)
    outbox.init_app(app)
    register_mail_handler()
    logins.init_app(app)
    tokens.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    show_limiter_log()
    assets.init_app(app)
    bodies.init_app(app)
    responses.init_app(app)
    redis_url = app.config["REDIS_URL"]
    streams.init_app(
        app,
        broker=RedisBroker(redis_url) if redis_url else MemoryBroker(),
        client_key=stream_client,
    )


def show_limiter_log() -> None:
    """Flask-Limiter says when it falls back to memory on its "flask-limiter"
    logger, and gives that logger a ``NullHandler``, which also keeps Python's
    last-resort handler away: with no handler on the root logger (gunicorn
    without a log config and ``flask run`` set none) the warning would be
    lost. Send it where the app's own log goes."""
    import logging

    from flask.logging import default_handler

    logger = logging.getLogger("flask-limiter")
    silent = all(isinstance(h, logging.NullHandler) for h in logger.handlers)
    if silent and not logging.getLogger().handlers:
        logger.addHandler(default_handler)


def register_blueprints(app: Flask) -> None:
    from . import accounts
    from . import api
    from . import health
    from . import images
    from . import live
    from . import mailbox
    from . import profile
    from . import shop
    from . import staff

    app.register_blueprint(accounts.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(mailbox.bp)
    app.register_blueprint(profile.bp)
    app.register_blueprint(shop.bp)
    app.register_blueprint(staff.bp)
    app.context_processor(lambda: {"mailbox_enabled": mailbox.mailbox_enabled})


def register_commands(app: Flask) -> None:
    from flask_patterns.assets import assets_cli

    from . import cli
    from . import migrate

    app.cli.add_command(cli.init_db)
    app.cli.add_command(migrate.commands())
    app.cli.add_command(cli.demo)
    app.cli.add_command(assets_cli)
