"""The stream pool's gunicorn settings (``deploy/gunicorn/stream.conf.py``)."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

from flask import Flask

CONFIG = Path(__file__).resolve().parent.parent / "deploy/gunicorn/stream.conf.py"


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
