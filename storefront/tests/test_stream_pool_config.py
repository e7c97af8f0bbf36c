"""The stream pool's gunicorn settings (``deploy/gunicorn/stream.conf.py``)."""

from __future__ import annotations

import gc
import os
import resource
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import procfs
from flask import Flask

from .deployment import ROOT

CONFIG = ROOT / "deploy/gunicorn/stream.conf.py"


class FakeWorker:
    alive = True

    def __init__(self, wsgi: object) -> None:
        self.wsgi = wsgi


def test_the_stream_pool_raises_the_young_collection_threshold(monkeypatch):
    monkeypatch.setenv("STREAM_GC_THRESHOLD", "12345")
    config = runpy.run_path(str(CONFIG))
    saved = gc.get_threshold()
    try:
        # Any WSGI app: one without flask-patterns streams gets the tuning alone.
        config["post_worker_init"](FakeWorker(Flask("plain")))
        assert gc.get_threshold() == (12345, 10, 10)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_the_stream_pool_defaults():
    config = runpy.run_path(str(CONFIG))
    assert config["worker_class"] == "gevent"
    assert config["gc_threshold"] == 50_000


def test_the_stream_pool_serves_apps_of_a_virtualenv_without_flask_patterns(
    monkeypatch,
):
    import sys

    # What the Flask-SSE benchmark runs: the same settings, no flask-patterns.
    monkeypatch.setitem(sys.modules, "flask_patterns.streams", None)
    config = runpy.run_path(str(CONFIG))
    saved = gc.get_threshold()
    try:
        config["post_worker_init"](FakeWorker(object()))
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_closing_the_streams_of_a_wsgi_app_that_is_not_flask_closes_none():
    from flask_patterns.streams import close_streams

    assert close_streams(lambda environ, start_response: []) == 0


def test_the_stream_pool_raises_its_open_files_to_what_its_streams_need(
    unused_port, tmp_path
):
    """Started with a soft limit of 512 (a process manager's default is often
    1024), a worker for 2,000 streams runs with room for them all."""
    app = tmp_path / "plain_app.py"
    app.write_text("def app(environ, start_response):\n    return []\n")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(CONFIG),
            "--chdir",
            str(tmp_path),
            "plain_app:app",
        ],
        env={
            **os.environ,
            "STREAM_BIND": f"127.0.0.1:{unused_port}",
            "STREAM_WORKER_CONNECTIONS": "2000",
            "STREAM_CONTROL_SOCKET": str(tmp_path / "stream.ctl"),
            "STREAM_GRACEFUL_TIMEOUT": "1",
        },
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not procfs.children(gunicorn.pid):
            assert time.monotonic() < deadline, "no worker started"
            time.sleep(0.1)
        worker = procfs.children(gunicorn.pid)[0]
        limits = Path(f"/proc/{worker}/limits").read_text()
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=30)
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3] == str(min(hard, 2000 + 256)), line
