"""A real gunicorn gevent worker serving ``served_app``, and raw-socket
clients that read its streams."""

from __future__ import annotations

import http.client
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Served:
    """``served_app`` under ``gunicorn -k gevent -w 1`` on a free port; the
    keywords serve another ``app`` from ``directory``, with more workers, of
    another class, a config file and more environment variables."""

    def __init__(
        self,
        redis_url: str,
        port: int,
        log: Path,
        *,
        app: str = "served_app:app",
        directory: Path = HERE,
        workers: int = 1,
        worker_class: str = "gevent",
        config: Path | None = None,
        env: dict[str, str] | None = None,
        **settings: object,
    ) -> None:
        env = {**os.environ, "REDIS_URL": redis_url, **(env or {})}
        self.log = log.open("wb")
        env.update({f"STREAMS_{k.upper()}": str(v) for k, v in settings.items()})
        self.port = port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *(["-c", str(config)] if config is not None else []),
                "-k",
                worker_class,
                "-w",
                str(workers),
                "--worker-connections",
                "10000",
                "--backlog",
                "4096",
                "--bind",
                f"127.0.0.1:{port}",
                "--chdir",
                str(directory),
                app,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.open_streams()
                return
            except OSError:
                assert self.process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn never listened"
                time.sleep(0.1)

    def open_streams(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/open")
            return int(connection.getresponse().read())
        finally:
            connection.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Client:
    """One ``EventSource``, on a non-blocking socket: HTTP/1.0, so the body is
    the stream itself, parsed frame by frame."""

    def __init__(self, port: int, last_event_id: str | None = None) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        header = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.request = (
            f"GET /streams/activity HTTP/1.0\r\nHost: t\r\n{header}\r\n".encode()
        )
        self.buffer = b""
        self.head_done = False
        self.events: list[dict[str, str]] = []
        self.ended = False

    def send_request(self) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(self.request)
        self.sock.setblocking(False)

    def read(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            chunk = b""
        if not chunk:
            self.ended = True
            return
        self.buffer += chunk
        if not self.head_done:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            assert head.split(b"\r\n")[0].endswith(b" 200 OK"), head
            self.head_done, self.buffer = True, rest
        *frames, self.buffer = self.buffer.split(b"\n\n")
        for frame in frames:
            fields = dict(
                line.split(": ", 1)
                for line in frame.decode().split("\n")
                if ": " in line and not line.startswith(":")
            )
            if "data" in fields or "event" in fields:
                self.events.append(fields)

    def close(self) -> None:
        self.sock.close()


def pump(clients, until, timeout):
    """Read every client until ``until()`` holds; returns the seconds it took."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    started = time.monotonic()
    try:
        while not until():
            assert time.monotonic() - started < timeout, "timed out"
            for key, _ in selector.select(timeout=0.2):
                key.data.read()
                if key.data.ended:
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
    return time.monotonic() - started


def recv_or_empty(sock):
    try:
        return sock.recv(65536)
    except (ConnectionError, TimeoutError):
        return b""
