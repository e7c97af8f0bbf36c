"""Requests per second of a view whose session is managed by
:class:`flask_patterns.db.Database`, against the same view written by hand.

Both apps answer ``POST /hit``: read one counter row by primary key, insert one
row that refers to it, answer a small JSON body. The *managed* view uses
``db.session`` and leaves the commit to the library's ``after_request`` hook; the
*hand-written* view opens ``sqlalchemy.orm.Session(engine)``, commits explicitly
and closes the session in a ``finally`` block. Both engines are built by the same
helper, so pooling, pre-ping and the SQLite pragmas and ``BEGIN IMMEDIATE`` are
identical and only the per-request session handling differs.

Each app is called in-process through its WSGI callable with a prebuilt environ,
so the figure is the cost of the request lifecycle plus the database round trips,
not HTTP parsing. The two apps take turns in short slices within every round, so
that a noisy neighbour or a slow disk slows both alike, and the medians of the
rounds are compared. The goal is that the managed version keeps at least 95 % of
the hand-written throughput. The client's CPU time per request is reported too:
it leaves out the waits for the disk and the server, which dilute the wall-clock
ratio, and so shows the session handling's own cost.

A second pair does the same in an app that uses Flask-SQLAlchemy 3.1:
*Flask-SQLAlchemy, managed* hands the extension to
``Database(app, flask_sqlalchemy=db)`` and leaves the commit to it;
*Flask-SQLAlchemy, by hand* is the same app without ``Database``, whose view
calls ``db.session.commit()``. Both use Flask-SQLAlchemy's engine.

A third pair measures the first one again with the library's Prometheus
metrics on (:class:`flask_patterns.metrics.Metrics`, in prometheus_client's
multiprocess mode as under gunicorn): *managed, metrics on* against the same
hand-written app.

Run it with ``make bench``; it prints a table and rewrites its own section of
``BENCHMARKS.md``. ``TEST_DATABASE_URL`` points it to another PostgreSQL server.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import Session
from werkzeug.test import EnvironBuilder

from bench.report import add_report_options
from bench.report import machine
from bench.report import report_path
from bench.report import run_time
from bench.report import Section
from flask_patterns import observe
from flask_patterns.db import Database
from flask_patterns.db.engine import create_engine
from flask_patterns.db.engine import resolve_url

TARGET = 0.95
#: Each pair: the app whose commits the library manages, and the same app
#: committing by hand.
PAIRS = {
    "Database": ("managed", "hand"),
    "Flask-SQLAlchemy": ("fsa managed", "fsa hand"),
    "Database, metrics on": ("managed metrics", "hand"),
}
LABELS = {
    "managed": "managed",
    "hand": "hand-written",
    "fsa managed": "Flask-SQLAlchemy, managed",
    "fsa hand": "Flask-SQLAlchemy, by hand",
    "managed metrics": "managed, metrics on",
}
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1/test")
SECTION = Section("unit-of-work")

WSGIApp = t.Callable[[dict[str, t.Any], t.Callable[..., t.Any]], t.Iterable[bytes]]


class Base(DeclarativeBase):
    pass


class Counter(Base):
    __tablename__ = "bench_counter"
    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int]


class Hit(Base):
    __tablename__ = "bench_hit"
    id: Mapped[int] = mapped_column(primary_key=True)
    counter_id: Mapped[int] = mapped_column(sa.ForeignKey("bench_counter.id"))


# The two apps under test.


def managed_app(url: str) -> tuple[Flask, sa.Engine]:
    """The view with ``db.session``, committed by the library."""
    app = Flask(__name__)
    app.config["PATTERNS_DATABASE_URL"] = url
    db = Database(app)
    return _with_hit_view(app, db)


def metrics_app(url: str) -> tuple[Flask, sa.Engine, tuple[observe.Observer, ...]]:
    """The managed app with the library's metrics, and the observers they
    added: taken off again, so that only the pair measured with metrics on
    runs with them."""
    from flask_patterns.metrics import Metrics

    app, engine = managed_app(url)
    before = observe.observers()
    Metrics(app)
    added = tuple(o for o in observe.observers() if o not in before)
    for observer in added:
        observe.remove_observer(observer)
    return app, engine, added


def _with_hit_view(app: Flask, db: Database) -> tuple[Flask, sa.Engine]:
    """Add the managed view to ``app``."""

    @app.post("/hit")
    def hit() -> dict[str, int]:
        counter = db.session.get_one(Counter, 1)
        db.session.add(Hit(counter_id=counter.id))
        return {"counter": counter.value}

    return app, db.engine_for(app)


def hand_app(url: str) -> tuple[Flask, sa.Engine]:
    """The same view with a session opened, committed and closed by hand."""
    app = Flask(__name__)
    engine = create_engine(resolve_url(url, app.instance_path), {})

    @app.post("/hit")
    def hit() -> dict[str, int]:
        session = Session(engine)
        try:
            counter = session.get_one(Counter, 1)
            session.add(Hit(counter_id=counter.id))
            body = {"counter": counter.value}
            session.commit()
        finally:
            session.close()
        return body

    return app, engine


def flask_sqlalchemy_app(url: str, *, managed: bool) -> tuple[Flask, sa.Engine]:
    """The view in an app on Flask-SQLAlchemy, committed by the library
    (``managed``) or by ``db.session.commit()``."""
    from flask_sqlalchemy import SQLAlchemy

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = resolve_url(url, app.instance_path)
    fsa = SQLAlchemy(app)
    if managed:
        Database(app, flask_sqlalchemy=fsa)

    @app.post("/hit")
    def hit() -> dict[str, int]:
        counter = fsa.session.get_one(Counter, 1)
        fsa.session.add(Hit(counter_id=counter.id))
        body = {"counter": counter.value}
        if not managed:
            fsa.session.commit()
        return body

    with app.app_context():
        return app, fsa.engine


# Driving a WSGI callable.


def hit_environ() -> dict[str, t.Any]:
    return EnvironBuilder(path="/hit", method="POST").get_environ()


def call(app: WSGIApp, environ: dict[str, t.Any]) -> str:
    """Call ``app`` once, consume and close its body, return the status line."""
    status: list[str] = []

    def start_response(line: str, headers: t.Any, exc_info: t.Any = None) -> None:
        status.append(line)

    body = app(dict(environ), start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0]


def drive(app: WSGIApp, environ: dict[str, t.Any], count: int) -> int:
    """Send ``count`` requests, return how many did not answer 200."""
    failures = 0
    for _ in range(count):
        if not call(app, environ).startswith("200"):
            failures += 1
    return failures


def drive_threads(
    app: WSGIApp, environ: dict[str, t.Any], count: int, threads: int
) -> int:
    """Send ``count`` requests from ``threads`` threads at once."""
    if threads == 1:
        return drive(app, environ, count)
    failures = [0] * threads

    def worker(index: int) -> None:
        share = count // threads + (index < count % threads)
        failures[index] = drive(app, environ, share)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return sum(failures)


@dataclass
class Clock:
    """Wall-clock and process CPU seconds spent on one app's requests."""

    wall: float = 0.0
    cpu: float = 0.0

    def measure(self, func: t.Callable[[], int]) -> int:
        wall, cpu = time.perf_counter(), time.process_time()
        result = func()
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return result


def timed_round(
    apps: dict[str, WSGIApp], count: int, threads: int, slices: int
) -> dict[str, Clock]:
    """``count`` requests to each app, sent in ``slices`` turns that alternate
    between the apps, the first app of each turn alternating too."""
    environ = hit_environ()
    clocks = {name: Clock() for name in apps}
    gc.collect()
    for turn in range(slices):
        order = list(apps) if turn % 2 == 0 else list(reversed(apps))
        for name in order:
            share = count // slices + (turn < count % slices)
            send = functools.partial(drive_threads, apps[name], environ, share, threads)
            failures = clocks[name].measure(send)
            if failures:
                raise RuntimeError(f"{name}: {failures} requests did not answer 200.")
    return clocks


# Databases.


@contextlib.contextmanager
def sqlite_database() -> t.Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        yield f"sqlite:///{directory}/bench.sqlite"


def postgres_problem(server: str) -> str | None:
    """Why PostgreSQL at ``server`` cannot be used, or ``None``."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return None


@contextlib.contextmanager
def postgres_database(server: str) -> t.Iterator[str]:
    """A URL whose connections see only a fresh schema, dropped at the end."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server else "?"
    try:
        yield f"{server}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def create_schema(engine: sa.Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Counter(id=1, value=42))
        session.commit()


def count_hits(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(Hit)) or 0


def server_version(engine: sa.Engine) -> str:
    if engine.dialect.name == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with engine.connect() as connection:
        version = str(connection.scalar(sa.text("SHOW server_version")))
    return f"PostgreSQL {version.split()[0]}"


# The benchmark.


@dataclass
class Settings:
    rounds: int
    slices: int
    warmup: int
    threads: list[int]
    requests: dict[str, int]
    machine: str = ""
    servers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    """The rounds of both apps on one backend with one number of threads."""

    backend: str
    threads: int
    requests: int
    #: The pair compared: the managed app's name, then the hand-written one's.
    pair: tuple[str, str] = PAIRS["Database"]
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    def add(self, clocks: dict[str, Clock]) -> None:
        for name, clock in clocks.items():
            self.rates.setdefault(name, []).append(self.requests / clock.wall)
            self.cpu_us.setdefault(name, []).append(clock.cpu / self.requests * 1e6)

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    @property
    def ratio(self) -> float:
        managed, hand = self.pair
        return self.median(managed) / self.median(hand)

    @property
    def round_ratios(self) -> list[float]:
        managed, hand = self.pair
        pairs = zip(self.rates[managed], self.rates[hand], strict=True)
        return [m / h for m, h in pairs]

    @property
    def cpu_ratio(self) -> float:
        managed, hand = self.pair
        return statistics.median(self.cpu_us[hand]) / statistics.median(
            self.cpu_us[managed]
        )


def compare(
    apps: dict[str, WSGIApp],
    backend: str,
    threads: int,
    settings: Settings,
    observers: tuple[observe.Observer, ...] = (),
) -> Result:
    """Warm both apps up, then measure ``settings.rounds`` rounds, with
    ``observers`` told what the units of work do meanwhile (the hand-written
    apps have none, so they are told nothing)."""
    pair = t.cast(tuple[str, str], tuple(apps))
    result = Result(backend, threads, settings.requests[backend], pair)
    for observer in observers:
        observe.add_observer(observer)
    try:
        timed_round(apps, settings.warmup, threads, 2)
        for _ in range(settings.rounds):
            result.add(timed_round(apps, result.requests, threads, settings.slices))
            rates = "  ".join(f"{n} {result.rates[n][-1]:5.0f}" for n in apps)
            print(f"  {backend:<10} {threads} thread(s)  {rates} req/s", flush=True)
    finally:
        for observer in observers:
            observe.remove_observer(observer)
    return result


def bench_backend(url: str, backend: str, settings: Settings) -> list[Result]:
    managed, managed_engine = managed_app(url)
    hand, hand_engine = hand_app(url)
    fsa_managed, fsa_managed_engine = flask_sqlalchemy_app(url, managed=True)
    fsa_hand, fsa_hand_engine = flask_sqlalchemy_app(url, managed=False)
    metered, metered_engine, observers = metrics_app(url)
    engines = [
        managed_engine,
        hand_engine,
        fsa_managed_engine,
        fsa_hand_engine,
        metered_engine,
    ]
    create_schema(hand_engine)
    pairs: list[tuple[dict[str, WSGIApp], tuple[observe.Observer, ...]]] = [
        ({"managed": managed, "hand": hand}, ()),
        ({"fsa managed": fsa_managed, "fsa hand": fsa_hand}, ()),
        ({"managed metrics": metered, "hand": hand}, observers),
    ]
    try:
        results = [
            compare(apps, backend, n, settings, told)
            for apps, told in pairs
            for n in settings.threads
        ]
        check_rows(hand_engine, results, settings)
        settings.servers.append(server_version(hand_engine))
    finally:
        for engine in engines:
            engine.dispose()
    return results


def check_rows(engine: sa.Engine, results: list[Result], settings: Settings) -> None:
    """Every request must have committed its row."""
    per_app = sum(settings.warmup + settings.rounds * r.requests for r in results)
    found = count_hits(engine)
    if found != 2 * per_app:
        raise RuntimeError(f"Expected {2 * per_app} committed rows, found {found}.")


# The report.


def software(servers: list[str]) -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in (
        "Flask",
        "Werkzeug",
        "SQLAlchemy",
        "Flask-SQLAlchemy",
        "psycopg",
        "prometheus_client",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{name} {metadata.version(name)}")
    return ", ".join(parts + servers)


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def summary_table(results: list[Result]) -> list[str]:
    lines = [
        "| App | Backend | Threads | Requests per round and app"
        " | Managed req/s (median) | Hand-written req/s (median)"
        " | Managed / hand | Per-round ratios: median (min-max)"
        " | Client CPU µs/request, managed / hand (CPU-only ratio) | Target met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratios = r.round_ratios
        cpu = [statistics.median(r.cpu_us[name]) for name in r.pair]
        kind = next(k for k, pair in PAIRS.items() if pair == r.pair)
        lines.append(
            f"| {kind} | {r.backend} | {r.threads} | {r.requests}"
            f" | {r.median(r.pair[0]):.0f} | {r.median(r.pair[1]):.0f}"
            f" | **{percent(r.ratio)}** | {percent(statistics.median(ratios))}"
            f" ({percent(min(ratios))}-{percent(max(ratios))})"
            f" | {cpu[0]:.0f} / {cpu[1]:.0f} ({percent(r.cpu_ratio)})"
            f" | {'yes' if r.ratio >= TARGET else 'no'} |"
        )
    return lines


def rounds_table(results: list[Result]) -> list[str]:
    count = len(results[0].rates["managed"])
    numbers = " | ".join(str(i + 1) for i in range(count))
    lines = [
        f"| Backend | Threads | Version | {numbers} |",
        "|---|---:|---|" + "---:|" * count,
    ]
    for r in results:
        for name in r.pair:
            cells = " | ".join(f"{x:.0f}" for x in r.rates[name])
            lines.append(f"| {r.backend} | {r.threads} | {LABELS[name]} | {cells} |")
    return lines


def method(settings: Settings) -> list[str]:
    requests = " and ".join(
        f"{n} requests on {b}" for b, n in settings.requests.items()
    )
    rounds = f"{settings.rounds} rounds per backend and thread count"
    threads = " and ".join(str(n) for n in settings.threads)
    return [
        "- Both apps answer `POST /hit`: read one row by primary key, insert one"
        " row, answer a small JSON body with status 200. *Managed* uses"
        " `flask_patterns.db.Database`: `db.session`, committed by the library's"
        " `after_request` hook. *Hand-written* opens"
        " `sqlalchemy.orm.Session(engine)` in the view, calls `session.commit()`"
        " and closes the session in `finally`. It keeps SQLAlchemy's default"
        " `expire_on_commit=True` (the library's session uses `False`); the body"
        " is built before the commit, so neither reloads a row.",
        "- *Flask-SQLAlchemy, managed*: the same view in an app on"
        " Flask-SQLAlchemy 3.1 that hands it to"
        " `Database(app, flask_sqlalchemy=db)`; the view uses `db.session` and"
        " the library commits. *Flask-SQLAlchemy, by hand*: the same app without"
        " `Database`, whose view calls `db.session.commit()` and leaves the"
        " session to Flask-SQLAlchemy's teardown. Both run on Flask-SQLAlchemy's"
        " own engines (its pool defaults; the managed one's SQLite connections"
        " also get the library's `BEGIN`), and are compared with each other.",
        "- The first pair's engines both come from the library's"
        " `flask_patterns.db.engine.create_engine`: same pool, pre-ping, SQLite"
        " pragmas and `BEGIN IMMEDIATE`, same statements.",
        "- *Managed, metrics on*: the managed app again, with"
        " `flask_patterns.metrics.Metrics(app)`, against the same hand-written"
        " app. Its observer counts each transaction by outcome and observes the"
        " commit's duration, in prometheus_client's multiprocess mode (a"
        " `PROMETHEUS_MULTIPROC_DIR` in a temporary directory, as the"
        " deployment's gunicorn pools use it), so each update is a write to a"
        " memory-mapped file. It is told only while that pair is measured.",
        "- Each app is called in-process through its WSGI callable with a"
        " prebuilt environ (no HTTP parsing, no sockets); the response body is"
        f" consumed and closed. Run with {threads} thread(s) calling the app.",
        f"- After {settings.warmup} warm-up requests per app, {rounds}; a round"
        f" sends each app {requests}. Within a round the apps take"
        f" turns in {settings.slices} slices, the first app of each turn"
        " alternating, so both meet the same noise. A round's figure is its"
        " requests / the wall-clock time spent in that app's slices.",
        "- Managed / hand is the median managed requests/s / the median"
        " hand-written requests/s; the per-round ratios show the spread.",
        "- Client CPU is the benchmark process's CPU time per request (median of"
        " the rounds). It leaves out the waits for the disk and the server; the"
        " CPU-only ratio (hand-written CPU / managed CPU) is the throughput ratio"
        " a purely CPU-bound process would see.",
        "- SQLite: a file in a temporary directory, WAL, default `synchronous`,"
        " so each commit waits for the disk; with several threads the writers"
        " also queue for the database's single writer (the library's"
        " in-process writer lock, then `BEGIN IMMEDIATE`), in both apps, which"
        " share the engine helper."
        " PostgreSQL: a fresh schema, dropped at the end. The committed rows are"
        " counted afterwards: every request must have committed its row.",
    ]


def section(results: list[Result], settings: Settings) -> str:
    now = run_time()
    meets = all(r.ratio >= TARGET for r in results)
    parts = [
        SECTION.start,
        "## Unit of work: managed session vs. hand-written session, with and"
        " without Flask-SQLAlchemy, with metrics on",
        "",
        f"- Date: {now}",
        f"- Machine: {settings.machine}",
        f"- Software: {software(settings.servers)}",
        "- Command: `make bench` (`python -m bench.unit_of_work`)",
        *(f"- Note: {note}" for note in settings.notes),
        "",
        "Method:",
        "",
        *method(settings),
        "",
        *summary_table(results),
        "",
        "Target, managed >= 95 % of the hand-written requests/s:"
        f" **{'met' if meets else 'not met'}**.",
        "",
        "Requests per second, round by round:",
        "",
        *rounds_table(results),
        SECTION.end,
    ]
    return "\n".join(parts) + "\n"


# Command line.


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sqlite-requests", type=int, default=2000)
    parser.add_argument("--postgres-requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    add_report_options(parser)
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds,
        slices=args.slices,
        warmup=args.warmup,
        threads=args.threads,
        requests={"sqlite": args.sqlite_requests, "postgresql": args.postgres_requests},
        machine=machine(),
    )
    return settings, report_path(args)


def databases(stack: contextlib.ExitStack, settings: Settings) -> dict[str, str]:
    """The URL of each backend to measure; PostgreSQL only if it answers."""
    urls = {"sqlite": stack.enter_context(sqlite_database())}
    problem = postgres_problem(POSTGRES_URL)
    if problem is None:
        urls["postgresql"] = stack.enter_context(postgres_database(POSTGRES_URL))
        return urls
    shown = sa.make_url(POSTGRES_URL).render_as_string(hide_password=True)
    settings.notes.append(f"PostgreSQL at {shown} is unreachable ({problem}).")
    settings.requests.pop("postgresql")
    print(settings.notes[-1], "Measuring SQLite only.", file=sys.stderr)
    return urls


def main(argv: list[str] | None = None) -> int:
    settings, report = parse_args(argv)
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            directory = stack.enter_context(tempfile.TemporaryDirectory())
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        for backend, url in databases(stack, settings).items():
            results += bench_backend(url, backend, settings)
    print("\n" + "\n".join(summary_table(results)))
    if report is not None:
        SECTION.write(report, section(results, settings))
        print(f"\nWrote {report.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
