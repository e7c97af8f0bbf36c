"""Prometheus metrics of what the library does: transactions, after-commit
callbacks, the outbox, streams and the broker, for one process or for every
process of a machine.

:class:`Metrics` adds one :class:`MetricsObserver` per process to
:mod:`flask_patterns.observe` and renders the metrics for a scrape. The
outbox's figures are database state, so they are read from the outbox table
at scrape time (:class:`OutboxCollector`), right whichever process wrote the
rows. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts), every
process writes its metrics to files there and a scrape of any of them adds up
all: that is how the workers of gunicorn, the stream pool and the outbox
worker of one machine show as one. See ``docs/metrics.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import generate_latest
from prometheus_client import Histogram
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from . import observe
from . import outbox_admin
from ._registry import is_registered
from ._registry import refuse_second
from ._registry import register
from ._registry import state_of
from .outbox import _OutboxState
from .outbox import outbox_table
from .streams import BrokerUnavailable
from .streams.extension import streams_state

if t.TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = [
    "COMMIT_BUCKETS",
    "PUBLISH_TO_SEND_BUCKETS",
    "Metrics",
    "MetricsObserver",
    "OutboxCollector",
    "multiprocess_dir",
]

log = logging.getLogger("flask_patterns.metrics")

_NAME = "metrics"

#: Seconds a commit takes, from half a millisecond on a quiet local database
#: to the 10 s of one stuck behind a lock.
COMMIT_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

#: Seconds from an event's publication to its write to a stream: a
#: millisecond through a local Redis, up to 30 s for a client far behind.
PUBLISH_TO_SEND_BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR``, the folder where every process of the
    machine writes its metrics, or ``None`` (each process on its own)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class MetricsObserver(observe.Observer):
    """Records what the library does as Prometheus metrics. Every labelled
    series exists at 0 from the start, so that a rate is never missing.

    :param registry: where to register the metrics; a process' metrics are
        served from the default one (:class:`Metrics` makes this observer once
        per process), another one is for tests.
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        directory = multiprocess_dir()
        if directory is not None:
            os.makedirs(directory, exist_ok=True)
        self.transactions = Counter(
            "flask_patterns_transactions",
            "Transactions of units of work, by how they ended.",
            ["outcome"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "flask_patterns_commit_duration_seconds",
            "Seconds the commits of units of work took, failed ones included.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )
        self.after_commit_errors = Counter(
            "flask_patterns_after_commit_errors",
            "After-commit callbacks that raised.",
            registry=registry,
        )
        self.outbox_deliveries = Counter(
            "flask_patterns_outbox_deliveries",
            "Attempts to deliver an outbox message, by result.",
            ["result"],
            registry=registry,
        )
        self._streams(registry)
        self._outcomes = {o: self.transactions.labels(o) for o in _OUTCOMES}
        self._results = {r: self.outbox_deliveries.labels(r) for r in _RESULTS}
        self._reasons = {
            r: self.disconnects.labels(r) for r in observe.DISCONNECT_REASONS
        }

    def _streams(self, registry: CollectorRegistry | None) -> None:
        self.streams_open = Gauge(
            "flask_patterns_streams_open",
            "Event streams open now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.events_sent_total = Counter(
            "flask_patterns_stream_events_sent",
            "Events written to streams, one per stream.",
            registry=registry,
        )
        self.disconnects = Counter(
            "flask_patterns_stream_disconnects",
            "Event streams that ended, by why.",
            ["reason"],
            registry=registry,
        )
        self.resets = Counter(
            "flask_patterns_stream_resets",
            "Reconnecting clients told to reset: the events they missed are lost.",
            registry=registry,
        )
        self.publish_to_send = Histogram(
            "flask_patterns_stream_publish_to_send_seconds",
            "Seconds from an event's publication to its write to the streams.",
            buckets=PUBLISH_TO_SEND_BUCKETS,
            registry=registry,
        )
        self.broker_up = Gauge(
            "flask_patterns_broker_up",
            "1 if the event broker answered when last asked, 0 if it failed.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )

    def transaction_ended(self, outcome: str, seconds: float | None) -> None:
        counter = self._outcomes.get(outcome) or self.transactions.labels(outcome)
        counter.inc()
        if seconds is not None:
            self.commit_seconds.observe(seconds)

    def after_commit_failed(self, callback: str, error: BaseException) -> None:
        self.after_commit_errors.inc()

    def outbox_delivered(self, kind: str, result: str) -> None:
        counter = self._results.get(result) or self.outbox_deliveries.labels(result)
        counter.inc()

    def stream_opened(self) -> None:
        self.streams_open.inc()

    def stream_closed(self, reason: str) -> None:
        self.streams_open.dec()
        counter = self._reasons.get(reason) or self.disconnects.labels(reason)
        counter.inc()

    def events_sent(self, count: int, published_at: float | None) -> None:
        self.events_sent_total.inc(count)
        if published_at is not None:
            # Clocks of two machines may disagree by a little.
            self.publish_to_send.observe(max(0.0, time.time() - published_at))

    def stream_reset(self, reason: str) -> None:
        self.resets.inc()

    def broker_seen(self, up: bool) -> None:
        self.broker_up.set(1 if up else 0)


_OUTCOMES = observe.TRANSACTION_OUTCOMES
_RESULTS = ("sent", "retry", "failed")

_lock = threading.Lock()
_observer: MetricsObserver | None = None


def _process_observer() -> MetricsObserver:
    """The observer of this process, on the default registry, made once."""
    global _observer
    with _lock:
        if _observer is None:
            _observer = MetricsObserver()
        return _observer


class OutboxCollector(Collector):
    """The outbox's state, read from its table at each collection: how many
    messages are pending and failed, and how long the oldest pending one has
    waited (0 when none does). It reads through ``engine`` directly, in no
    unit of work, so that a scrape counts no transaction of its own.

    :param engine: the engine of the database holding ``outbox_message``.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> t.Iterator[Metric]:
        try:
            pending, failed, age = self._read()
        except sa.exc.SQLAlchemyError as error:
            log.warning("The outbox metrics are left out: %s", error)
            return
        messages = GaugeMetricFamily(
            "flask_patterns_outbox_messages",
            "Outbox messages waiting for delivery (pending) or given up (failed).",
            labels=["state"],
        )
        messages.add_metric(["pending"], pending)
        messages.add_metric(["failed"], failed)
        yield messages
        yield GaugeMetricFamily(
            "flask_patterns_outbox_oldest_pending_age_seconds",
            "Seconds the oldest pending outbox message has waited, 0 if none.",
            value=age,
        )

    def _read(self) -> tuple[int, int, float]:
        with self.engine.connect() as connection:
            pending = int(connection.scalar(_counted("pending")) or 0)
            failed = int(connection.scalar(_counted("failed")) or 0)
            oldest: dt.datetime | None = connection.scalar(_OLDEST_PENDING)
        if oldest is None:
            return pending, failed, 0.0
        waited = outbox_admin._now() - outbox_admin._aware(oldest)
        return pending, failed, max(0.0, waited.total_seconds())


def _counted(state: str) -> sa.Select[t.Any]:
    query = sa.select(sa.func.count()).select_from(outbox_table)
    return query.where(outbox_admin._in_state(state))


_OLDEST_PENDING = sa.select(sa.func.min(outbox_table.c.created_at)).where(
    outbox_admin._in_state("pending")
)


@dataclass(frozen=True)
class _MetricsState:
    #: The observer of this process that the app's metrics come from.
    observer: MetricsObserver


class Metrics:
    """Prometheus metrics for an app: registering adds this process' observer
    (once, however many apps register), :meth:`exposition` renders them.

    :param app: register on this app at once, or later with :meth:`init_app`.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` and start recording this process' metrics."""
        refuse_second(app, _NAME, what="Metrics")
        observer = _process_observer()
        register(app, _NAME, _MetricsState(observer), what="Metrics")
        observe.add_observer(observer)

    def exposition(self) -> tuple[bytes, str]:
        """The current app's metrics in Prometheus' text format, and its
        content type: every process' when ``PROMETHEUS_MULTIPROC_DIR`` is set,
        this one's otherwise, with the outbox's state if the app has an
        :class:`~flask_patterns.outbox.Outbox`. The app's broker is pinged
        first, so that ``flask_patterns_broker_up`` says how it is now."""
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        state = state_of(app, _NAME, _MetricsState, what="Metrics")
        _ping_broker(app, state.observer)
        registry = CollectorRegistry()
        directory = multiprocess_dir()
        if directory is not None:
            MultiProcessCollector(registry, path=directory)
        else:
            registry.register(REGISTRY)
        if is_registered(app, "outbox"):
            outbox = state_of(app, "outbox", _OutboxState, what="Outbox").outbox
            registry.register(OutboxCollector(outbox.db.engine_for(app)))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _ping_broker(app: Flask, observer: MetricsObserver) -> None:
    """Tell ``observer`` whether the app's broker answers now: without it, a
    process that has not used the broker yet would have nothing to say."""
    if not is_registered(app, "streams"):
        return
    try:
        streams_state(app).broker.ping()
    except BrokerUnavailable:
        observer.broker_seen(False)
    else:
        observer.broker_seen(True)
