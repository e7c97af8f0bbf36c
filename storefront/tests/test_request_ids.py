"""The shop's request ids and log lines: every response names its request,
``STOREFRONT_LOG_FORMAT`` picks text or JSON for the app's and the library's
lines, and the web pool's gunicorn writes its own lines the same way."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from storefront import create_app
from storefront.logs import gunicorn_logconfig

from .deployment import ROOT


def test_every_response_names_its_request(client):
    answer = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-ID"])
    kept = client.get("/healthz", headers={"X-Request-ID": "nginx-7"})
    assert kept.headers["X-Request-ID"] == "nginx-7"
    hostile = client.get("/", environ_overrides={"HTTP_X_REQUEST_ID": "a\r\nb"})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["X-Request-ID"])


def logging_app(app_factory, **config):
    app = app_factory(**config)

    @app.get("/logged")
    def logged():
        app.logger.warning("the shop says so")
        logging.getLogger("flask_patterns.test").warning("the library says so")
        return ""

    return app


def test_json_lines_of_the_app_and_the_library_carry_the_request_id(
    app_factory, capsys
):
    app = logging_app(app_factory, LOG_FORMAT="json")
    capsys.readouterr()
    app.test_client().get("/logged", headers={"X-Request-ID": "r-json"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [
        (line["logger"], line["message"], line["request_id"]) for line in lines
    ] == [
        ("storefront", "the shop says so", "r-json"),
        ("flask_patterns.test", "the library says so", "r-json"),
    ]


def test_text_lines_are_the_default_and_carry_the_request_id(app_factory, capsys):
    app = logging_app(app_factory)
    capsys.readouterr()
    app.test_client().get("/logged", headers={"X-Request-ID": "r-text"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, "each line once: no second handler on the app's logger"
    assert lines[0].endswith("WARNING in storefront [r-text]: the shop says so")
    assert lines[1].endswith("in flask_patterns.test [r-text]: the library says so")


def test_a_log_format_that_is_not_text_or_json_stops_the_app(tmp_path):
    with pytest.raises(ValueError, match="use text or json"):
        create_app({"LOG_FORMAT": "xml", "SECRET_KEY": "x", "TESTING": True})


def test_apps_made_one_after_the_other_leave_one_handler(app_factory):
    app_factory(), app_factory(LOG_FORMAT="json")
    ours = [
        handler
        for handler in logging.getLogger().handlers
        if type(handler).__name__ == "_StderrHandler"
    ]
    assert len(ours) == 1


def test_the_gunicorn_log_config_honours_no_access_log_and_refuses_bad_formats():
    config = gunicorn_logconfig("text", access_log=None)
    assert "access" not in config["handlers"]
    assert config["loggers"]["gunicorn.access"]["handlers"] == []
    to_file = gunicorn_logconfig("json", access_log="/var/log/access.log")
    assert to_file["handlers"]["access"]["filename"] == "/var/log/access.log"
    with pytest.raises(ValueError):
        gunicorn_logconfig("yaml")


def answer(url, **headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_the_web_pool_writes_one_json_line_per_record_with_the_request_id(
    tmp_path, port_factory
):
    port = port_factory()
    env = {
        **os.environ,
        "STOREFRONT_LOG_FORMAT": "json",
        "STOREFRONT_DATABASE_URL": f"sqlite:///{tmp_path / 'shop.sqlite'}",
        # Nothing listens there: /readyz logs why it is not ready.
        "STOREFRONT_REDIS_URL": f"redis://127.0.0.1:{port_factory()}/0",
        "STOREFRONT_SECRET_KEY": "test secret",
        "STOREFRONT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_WORKERS": "1",
        "WEB_CONTROL_SOCKET": str(tmp_path / "web.ctl"),
        "PYTHONUNBUFFERED": "1",
    }
    output = tmp_path / "web.log"
    with output.open("wb") as log:
        gunicorn = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                *("-c", str(ROOT / "deploy/gunicorn/web.conf.py")),
                "storefront.wsgi:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers = answer(
                    f"http://127.0.0.1:{port}/readyz", **{"X-Request-ID": "probe-1"}
                )
                break
            except OSError:
                assert gunicorn.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.2)
        assert (status, headers["X-Request-ID"]) == (503, "probe-1")
    finally:
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=30)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    by_logger = {}
    for line in lines:
        by_logger.setdefault(line["logger"], []).append(line)
    (access,) = by_logger["gunicorn.access"]
    assert '"GET /readyz HTTP/1.1" 503' in access["message"]
    assert access["request_id"] == "probe-1"
    (not_ready,) = by_logger["storefront.health"]
    assert not_ready["message"].startswith("Not ready: the broker check fails")
    assert not_ready["request_id"] == "probe-1"
    assert any(
        "Booting worker" in line["message"] for line in by_logger["gunicorn.error"]
    )
    assert all(line["request_id"] is None for line in by_logger["gunicorn.error"])
