"""Fixtures for the real services, shared by the library's and the storefront's tests.

A test that needs PostgreSQL or Redis skips with a one-line reason when the service
is absent, and fails instead when ``CI=true``: a green CI run exercised every part.
"""

from __future__ import annotations

import contextlib
import os
import typing as t
import uuid

import pytest

# The storefront tests live in storefront/tests, which importlib mode would
# otherwise register under a placeholder "storefront" package that hides the app.
# The library's tests run without it (from the sdist, or at the lowest versions).
with contextlib.suppress(ImportError):
    import storefront  # noqa: F401

CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://127.0.0.1/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def service_missing(reason: str) -> t.NoReturn:
    """Skip the test, or fail it when running in CI."""
    if CI:
        pytest.fail(f"{reason} (CI=true requires it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a PostgreSQL server that answers (``TEST_DATABASE_URL``)."""
    try:
        import psycopg
    except ImportError:
        service_missing("psycopg is not installed")
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        service_missing(f"PostgreSQL at {POSTGRES_URL} is unavailable: {error}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> t.Iterator[str]:
    """A ``postgresql://`` URL whose connections see only a fresh schema, dropped
    after the test, so tests never see each other's tables."""
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: t.Any) -> str:
    """A SQLite database in a fresh file."""
    return f"sqlite:///{tmp_path / 'test.sqlite'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return t.cast(str, request.getfixturevalue(name))


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The URL of a Redis server that answers (``REDIS_URL``)."""
    try:
        import redis
    except ImportError:
        service_missing("redis-py is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        service_missing(f"Redis at {REDIS_URL} is unavailable: {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_url(redis_server: str) -> t.Iterator[str]:
    """The Redis URL, with its database flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    yield redis_server
    client.flushdb()
    client.close()


def wait_for(
    condition: t.Callable[[], object], timeout: float = 15.0, pause: float = 0.02
) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout``
    seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(pause)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A ``redis-server`` of the test's own, on a free port, that the test can stop
    and start again on the same port."""

    def __init__(self, directory: t.Any) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            service_missing("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: t.Any = None

    def start(self, *, empty: bool = False) -> None:
        """Start the server; ``empty`` first removes what it persisted, as a
        Redis without persistence (or with its disk lost) comes back."""
        import shutil
        import subprocess
        import time

        import redis

        if empty:
            shutil.rmtree(f"{self.directory}/appendonlydir", ignore_errors=True)
        self.process = subprocess.Popen(
            [
                t.cast(str, self.binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                # An append-only file, so that a restart keeps the data.
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    @contextlib.contextmanager
    def frozen(self) -> t.Iterator[None]:
        """Stop the server's process (SIGSTOP) for the block: its port still
        accepts connections, and nothing answers on them, as a hung server or a
        network that drops packets does."""
        import signal

        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def redis_process(tmp_path: t.Any) -> t.Iterator[RedisProcess]:
    """A private, running ``redis-server`` (see :class:`RedisProcess`)."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


class SentinelSet:
    """A Redis primary, its replica and three sentinels that watch it as
    service ``shop``, each a ``redis-server`` of the test's own on a free
    port. :attr:`url` is a ``redis+sentinel://`` URL of the service."""

    service = "shop"

    def __init__(self, directory: t.Any) -> None:
        import shutil

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            service_missing("redis-server is not installed")
        self.directory = directory
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port() for _ in range(3)]
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{self.service}"
        self.processes: dict[int, t.Any] = {}

    def _start(self, port: int, *args: str) -> None:
        import subprocess

        self.processes[port] = subprocess.Popen(
            [t.cast(str, self.binary), *args],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
        )

    def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._start(self.primary, "--port", str(self.primary), *common)
        wait_until(lambda: _answers(self.primary), "the primary")
        self._start(
            self.replica,
            *("--port", str(self.replica), *common),
            *("--replicaof", "127.0.0.1", str(self.primary)),
        )
        for port in self.sentinels:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
            )
            self._start(port, str(config), "--sentinel")
        wait_until(self._replicated, "the replica to sync")
        wait_until(self._sentinels_ready, "the sentinels to know everyone")

    def _replicated(self) -> bool:
        import redis

        if not _answers(self.replica):  # still starting
            return False
        with redis.Redis(host="127.0.0.1", port=self.replica) as client:
            return bool(client.info("replication").get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        """Each sentinel knows the replica (it asks the primary only every
        10 s) and the other two (for the vote), or no failover can happen."""
        import redis

        for port in self.sentinels:
            with redis.Redis(
                host="127.0.0.1", port=port, decode_responses=True
            ) as client:
                if not _answers(port):
                    return False
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.service)
                others = client.execute_command("SENTINEL", "SENTINELS", self.service)
            if len(replicas) != 1 or len(others) != 2:
                return False
        return True

    def kill_primary(self) -> None:
        process = self.processes[self.primary]
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


def _answers(port: int) -> bool:
    import redis

    try:
        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(
    condition: t.Callable[[], bool], what: str = "a condition", timeout: float = 30.0
) -> None:
    """Poll ``condition`` every 0.1 s; fail naming ``what`` after ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def sentinel_set(tmp_path: t.Any) -> t.Iterator[SentinelSet]:
    """A running :class:`SentinelSet`."""
    servers = SentinelSet(tmp_path)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


class TcpRelay:
    """Forwards 127.0.0.1:port to a target address until :meth:`cut`, which closes
    the listener and every relayed connection, as when the server behind it dies;
    :meth:`restore` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: list[t.Any] = []
        self._frozen: set[t.Any] = set()
        self._listener: t.Any = None

    def freeze(self) -> None:
        """Stop forwarding on the connections open now, without closing them: the
        peers see a half-open connection. New connections work normally."""
        with self._lock:
            self._frozen.update(self._sockets)

    def restore(self) -> None:
        import socket
        import threading

        if self._listener is not None:
            return  # already relaying
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        import socket

        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [listener, *sockets]:
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: t.Any) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(
                    target=self._pipe, args=(source, sink), daemon=True
                ).start()

    def _pipe(self, source: t.Any, sink: t.Any) -> None:
        import socket

        try:
            while data := source.recv(65536):
                if source not in self._frozen:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def redis_relay(redis_process: RedisProcess) -> t.Iterator[TcpRelay]:
    """A :class:`TcpRelay` in front of the test's private Redis."""
    relay = TcpRelay("127.0.0.1", redis_process.port)
    relay.restore()
    yield relay
    relay.cut()


@pytest.fixture
def postgres_relay(postgres_server: str) -> t.Iterator[TcpRelay]:
    """A :class:`TcpRelay` in front of the test PostgreSQL server."""
    from sqlalchemy import make_url

    url = make_url(postgres_server)
    relay = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
    relay.restore()
    yield relay
    relay.cut()


@pytest.fixture
def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_port()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"smtp://127.0.0.1:{port}"
        self.messages: list[t.Any] = []

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        import email
        from email import policy

        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)
        return "250 Message accepted"


@pytest.fixture
def smtp_server(unused_port: int) -> t.Iterator[SmtpSink]:
    """A running :class:`SmtpSink`."""
    from aiosmtpd.controller import Controller

    sink = SmtpSink(unused_port)
    controller = Controller(sink, hostname="127.0.0.1", port=unused_port)
    controller.start()
    yield sink
    controller.stop()


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> t.Iterator[t.Any]:
    """Debian's Chromium driven by Playwright (no browser download needed)."""
    if not os.path.exists(CHROMIUM):
        service_missing(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class LiveServer:
    """A WSGI app served over real HTTP on 127.0.0.1, in a thread."""

    def __init__(self, app: t.Any, port: int) -> None:
        import threading

        from werkzeug.serving import make_server

        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(unused_port: int) -> t.Iterator[t.Callable[[t.Any], LiveServer]]:
    """Serve an app over HTTP: ``live_server(app).url``."""
    servers: list[LiveServer] = []

    def serve(app: t.Any) -> LiveServer:
        servers.append(LiveServer(app, unused_port if not servers else free_port()))
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> t.Any:
    """``test-output/<test name>/`` for screenshots and other artefacts."""
    import pathlib
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = pathlib.Path(__file__).parent / "test-output" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def port_factory() -> t.Callable[[], int]:
    """Call it for each TCP port on 127.0.0.1 that a test needs free."""
    return free_port


@pytest.fixture(scope="session")
def nginx() -> str:
    """The path of Debian's nginx."""
    import shutil

    path = shutil.which("nginx")
    if path is None:
        service_missing("nginx is not installed (apt-get install -y nginx)")
    return path
