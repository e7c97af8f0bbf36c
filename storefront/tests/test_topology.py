"""The production topology for real: nginx, the gunicorn web pool, the gunicorn
gevent stream pool and the outbox worker on PostgreSQL and Redis, started by
``deploy/up.py`` (what ``make up`` runs) and driven over HTTP through nginx."""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from .deployment import ROOT
from .deployment import sign_up_and_activate


class EventClient:
    """An EventSource written for tests: reads a stream in a thread, honours
    retry: hints and reconnects with Last-Event-ID when the stream ends."""

    def __init__(self, base, path, *, reconnect=True):
        parts = urllib.parse.urlsplit(base)
        self.host, self.port, self.path = parts.hostname, parts.port, path
        self.reconnect = reconnect
        self.events, self.comments, self.endings = [], 0, []
        self.last_id, self.retry_ms = None, 3000
        self.connections = 0
        self.connection = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            with contextlib.suppress(OSError):
                self._read_stream()
            self.endings.append(self.retry_ms)
            if not self.reconnect:
                return
            self.stopped.wait(self.retry_ms / 1000)

    def _read_stream(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        self.connection = connection
        try:
            self._read(connection)
        finally:
            connection.close()

    def _read(self, connection):
        headers = {"Accept": "text/event-stream"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        connection.request("GET", self.path, headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        self.connections += 1
        fields = {}
        while not self.stopped.is_set():
            line = response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith(":"):
                self.comments += 1
            elif line:
                name, _, value = line.partition(": ")
                fields[name.rstrip(":")] = value
            else:
                if "retry" in fields:
                    self.retry_ms = int(fields["retry"])
                if "id" in fields:
                    self.last_id = fields["id"]
                if "data" in fields:
                    self.events.append((fields.get("id"), json.loads(fields["data"])))
                fields = {}

    def wait_for(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"gave up; got {self.events[-5:]}"
            time.sleep(0.05)

    def close(self):
        self.stopped.set()
        connection = getattr(self, "connection", None)
        if connection is not None and connection.sock is not None:
            connection.sock.shutdown(2)
        self.thread.join(timeout=10)


def test_a_purchase_through_nginx_reaches_a_stream_served_by_another_pool(topology):
    stream = EventClient(topology.url, "/streams/activity")
    stream.wait_for(lambda: stream.connections == 1, timeout=10)
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    browser = sign_up_and_activate(topology, email)
    _, where, page = browser.post("/products/2/purchase", {}, token_from="/products/2")
    assert where == topology.url + "/orders"
    assert "is confirmed" in page
    stream.wait_for(
        lambda: any(
            e[1].get("text") == "Someone bought Pour-over kettle" for e in stream.events
        ),
        timeout=5,
    )
    stream.close()
    assert not any(email.split("@")[0] in json.dumps(e) for e in stream.events)
    # The confirmation mail went into the outbox, after the commit; with no SMTP
    # server configured it waits there.
    (confirmation,) = [m for m in topology.mails() if m[1].startswith("Your order")]
    assert confirmation[0] == email
    assert confirmation[3] is False, "not sent: there is nowhere to send it"


def test_a_stream_survives_70_seconds_of_silence_through_nginx(topology):
    from flask_patterns.streams import RedisBroker

    stream = EventClient(topology.url, "/streams/activity", reconnect=False)
    stream.wait_for(lambda: stream.connections == 1, timeout=10)
    time.sleep(70)
    assert stream.endings == [], "the stream was cut while idle"
    assert stream.comments >= 4, "heartbeats every 15 s kept it open"
    publisher = RedisBroker(topology.redis_url)
    event_id = publisher.publish("activity", {"text": "after the silence"})
    stream.wait_for(lambda: any(i == event_id for i, _ in stream.events), timeout=5)
    stream.close()
    publisher.close()


def test_a_stream_pool_restart_loses_no_event_for_a_reconnecting_client(topology):
    from flask_patterns.streams import RedisBroker

    publisher = RedisBroker(topology.redis_url)
    stream = EventClient(topology.url, "/streams/activity")
    stream.wait_for(lambda: stream.connections == 1, timeout=10)
    published = []

    def publish_for(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            published.append(publisher.publish("activity", {"n": len(published)}))
            time.sleep(0.1)

    sender = threading.Thread(target=publish_for, args=(8,))
    sender.start()
    time.sleep(1)
    os.kill(topology.pids["stream"], signal.SIGHUP)  # new workers, old ones drain
    sender.join()
    stream.wait_for(lambda: stream.connections >= 2, timeout=20)
    stream.wait_for(lambda: len(stream.events) >= len(published), timeout=20)
    ids = [i for i, data in stream.events if "n" in data]
    assert ids == published, "every event once, in order, across the restart"
    assert 3000 <= stream.endings[0] <= 12000, "closed with a spread retry: hint"
    stream.close()
    publisher.close()


def test_a_web_pool_reload_fails_no_request(topology):
    results = []

    def hammer(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(
                    f"{topology.url}/products/1", timeout=10
                ) as r:
                    results.append(r.status)
            except OSError as error:
                results.append(repr(error))

    worker = threading.Thread(target=hammer, args=(8,))
    worker.start()
    time.sleep(2)
    os.kill(topology.pids["web"], signal.SIGHUP)
    worker.join()
    assert len(results) > 50
    assert set(results) == {200}, [r for r in results if r != 200][:5]


def test_make_up_starts_a_process_that_died_again_and_says_so(topology):
    old = topology.pids["worker"]
    os.kill(old, signal.SIGKILL)
    pid_file = topology.run_dir / "pids.json"
    deadline = time.monotonic() + 20
    while json.loads(pid_file.read_text())["worker"][0] == old:
        assert time.monotonic() < deadline, topology.log.read_text()[-2000:]
        time.sleep(0.2)
    new = json.loads(pid_file.read_text())["worker"][0]
    os.kill(new, 0)  # running
    log = topology.log.read_text()
    assert "make up: worker exited with -9; starting it again in 1 s." in log
    assert f"make up: started worker again (pid {new})." in log
    topology.pids["worker"] = new
    assert topology.process.poll() is None, "the rest of the topology stays up"
    with urllib.request.urlopen(f"{topology.url}/products/1", timeout=10) as page:
        assert page.status == 200


@pytest.mark.parametrize(
    ("service", "hint"),
    [("DATABASE", "apt-get install -y postgresql"), ("REDIS", "redis-server")],
)
def test_make_up_names_a_missing_service_and_how_to_install_it(
    tmp_path, postgres_server, redis_server, port_factory, service, hint
):
    closed = port_factory()
    urls = {
        "DATABASE": f"postgresql://127.0.0.1:{closed}/storefront",
        "REDIS": f"redis://127.0.0.1:{closed}/0",
    }
    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": postgres_server,
        "STOREFRONT_REDIS_URL": redis_server,
        f"STOREFRONT_{service}_URL": urls[service],
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/up.py"), "--run-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 69
    assert hint in result.stderr
    assert f"127.0.0.1:{closed}" in result.stderr
    assert not (tmp_path / "pids.json").exists()
