"""Liveness and readiness probes for load balancers and process managers.

``/readyz`` tells the public only whether the shop is ready. Why it is not
(hosts, ports, driver messages) goes to the log, and to a caller that sends
``Authorization: Bearer <STOREFRONT_READYZ_TOKEN>`` when that is set.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil

import sqlalchemy as sa
from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask import Response

from flask_patterns.streams import BrokerUnavailable

from .extensions import db
from .extensions import streams

bp = Blueprint("health", __name__)
log = logging.getLogger("storefront.health")


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answers; says nothing about its dependencies."""
    return jsonify(status="ok")


def _reason(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def _check_database() -> str | None:
    """The database answers and takes writes: a PostgreSQL that is a standby or
    read-only, or a SQLite file that is read-only or on a full disk, answers
    reads while every purchase fails."""
    engine = db.engine
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                refused = connection.scalar(_PG_READ_ONLY)
            else:
                connection.execute(sa.text("SELECT 1"))
                refused = None
    except sa.exc.SQLAlchemyError as error:
        return _reason(error)
    if refused:
        return f"refuses writes: {refused}"
    if engine.dialect.name == "sqlite":
        return _sqlite_refuses_writes(engine.url)
    return None


_PG_READ_ONLY = sa.text(
    "SELECT CASE WHEN pg_is_in_recovery() THEN 'a standby in recovery'"
    " WHEN current_setting('transaction_read_only') = 'on'"
    " THEN 'transactions are read-only' END"
)


def _sqlite_refuses_writes(url: sa.URL) -> str | None:
    """Why writes to the SQLite file would fail, from the file system alone
    (no write, no lock): opened read-only, a read-only file or directory (WAL
    writes beside the file), or less free space than READYZ_MIN_FREE_BYTES."""
    path = url.database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return None
    if url.query.get("mode") == "ro" or "mode=ro" in path:
        return "refuses writes: opened read-only (mode=ro)"
    path = path.removeprefix("file:").split("?", 1)[0]
    directory = os.path.dirname(os.path.abspath(path))
    for name, where in (("file", path), ("directory", directory)):
        if os.path.exists(where) and not os.access(where, os.W_OK):
            return f"refuses writes: the database {name} is read-only"
    free = shutil.disk_usage(directory).free
    needed = int(current_app.config.get("READYZ_MIN_FREE_BYTES", 16 * 1024 * 1024))
    if free < needed:
        return f"refuses writes: {free} bytes free on its disk, under {needed}"
    return None


def _check_broker() -> str | None:
    try:
        streams.broker.ping()
    except BrokerUnavailable as error:
        return _reason(error)
    return None


def _may_see_reasons() -> bool:
    token = current_app.config.get("READYZ_TOKEN")
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(
        given.encode("utf-8"), f"Bearer {token}".encode()
    )


def _log_changes(failures: dict[str, str]) -> None:
    """Log each check that starts failing (or fails differently) and each one
    that recovers, once, rather than on every poll of a load balancer."""
    seen: dict[str, str] = current_app.extensions.setdefault("storefront.readyz", {})
    for name in sorted(set(seen) | set(failures)):
        reason = failures.get(name)
        if reason is not None and seen.get(name) != reason:
            log.warning("Not ready: the %s check fails: %s", name, reason)
        elif reason is None:
            log.warning("Ready again: the %s check passes.", name)
    seen.clear()
    seen.update(failures)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Whether the database and the event broker answer now: 200 or 503. The
    reasons are logged, and shown only to a holder of the readiness token."""
    failures = {
        name: reason
        for name, reason in (
            ("database", _check_database()),
            ("broker", _check_broker()),
        )
        if reason is not None
    }
    _log_changes(failures)
    body: dict[str, object] = {"status": "unavailable" if failures else "ok"}
    if _may_see_reasons():
        body["checks"] = {
            name: failures.get(name, "ok") for name in ("database", "broker")
        }
    return jsonify(body), 503 if failures else 200
