"""The nginx configuration ``deploy/up.py`` renders, checked by nginx itself."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import runpy
import socket
import subprocess
import sys
import typing as t

import pytest

from .deployment import ROOT

UP = runpy.run_path(str(ROOT / "deploy/up.py"), run_name="up")


def render(tmp_path, public_url):
    env = {
        "STOREFRONT_PUBLIC_URL": public_url,
        "STOREFRONT_PATTERNS_ASSETS_ROOT": str(tmp_path / "static"),
    }
    args = argparse.Namespace(
        listen="127.0.0.1:18080", web="127.0.0.1:18001", stream="127.0.0.1:18002"
    )
    origin = UP["public_origin"](env)
    return UP["render_nginx"](tmp_path, args, env, origin)


@pytest.mark.parametrize(
    ("public_url", "server_name"),
    [
        ("https://shop.example.com", "server_name shop.example.com;"),
        ("http://127.0.0.1:8080", "server_name 127.0.0.1 localhost [::1];"),
    ],
)
def test_nginx_serves_only_the_public_host_and_drops_the_rest(
    tmp_path, nginx, public_url, server_name
):
    config = render(tmp_path, public_url)
    site = (tmp_path / "storefront.conf").read_text()
    assert server_name in site
    assert "listen 127.0.0.1:18080 default_server;" in site
    assert "return 444;" in site
    assert "limit_conn storefront_streams_per_address 20;" in site
    assert "proxy_set_header X-Request-ID $storefront_request_id;" in site
    assert f"access_log {tmp_path / 'nginx-access.log'} storefront;" in site
    assert "${" not in site + config.read_text()
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_an_unusable_public_url_stops_make_up_with_the_reason(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/up.py"), "--run-dir", str(tmp_path)],
        env={"STOREFRONT_PUBLIC_URL": "shop.example.com", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 69
    assert "STOREFRONT_PUBLIC_URL='shop.example.com' is not usable" in result.stderr
    assert not (tmp_path / "pids.json").exists()


@pytest.mark.parametrize("value", ["0", "65536", "many"])
def test_a_streams_per_address_nginx_cannot_take_stops_make_up(tmp_path, value):
    result = subprocess.run(
        [sys.executable, str(ROOT / "deploy/up.py"), "--run-dir", str(tmp_path)],
        env={"NGINX_STREAMS_PER_ADDRESS": value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 69
    assert "must be a number from 1 to 65535" in result.stderr


def test_nginx_cuts_a_stuck_stream_client_when_the_stream_worker_does(tmp_path):
    from flask import Flask

    from flask_patterns.streams import EventStreams

    app = Flask(__name__)
    EventStreams(app)
    site = (ROOT / "deploy/nginx/storefront.conf.template").read_text()
    streams = site[site.index("location /streams/") :]
    streams = streams[: streams.index("\n    }")]
    timeout = app.config["PATTERNS_STREAMS_WRITE_TIMEOUT"]
    assert f"send_timeout {int(timeout)}s;" in streams


class Nginx(t.NamedTuple):
    """A running nginx of the rendered configuration, and how to ask it."""

    port: int

    def request(self, method, path, headers=None):
        """The response (read) and its body as text."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            return response, response.read().decode()
        finally:
            connection.close()


@contextlib.contextmanager
def running_nginx(tmp_path, nginx, web_port, edit=None):
    """nginx on a free port with the configuration ``deploy/up.py`` renders,
    in front of a web pool on ``web_port``; ``edit`` may change the rendered
    site first."""
    from conftest import free_port
    from conftest import wait_for

    port = free_port()
    env = {
        "STOREFRONT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "STOREFRONT_PATTERNS_ASSETS_ROOT": str(tmp_path / "static"),
    }
    args = argparse.Namespace(
        listen=f"127.0.0.1:{port}",
        web=f"127.0.0.1:{web_port}",
        stream=f"127.0.0.1:{free_port()}",
    )
    config = UP["render_nginx"](tmp_path, args, env, UP["public_origin"](env))
    site = tmp_path / "storefront.conf"
    if edit is not None:
        site.write_text(edit(site.read_text()))
    server = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(config)], stderr=subprocess.DEVNULL
    )

    def listening():
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            return True
        return False

    try:
        wait_for(listening, timeout=10)
        yield Nginx(port)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_nginx_answers_404_for_metrics_itself_and_proxies_the_rest(
    tmp_path, nginx, port_factory
):
    import http.server
    import threading

    class Web(http.server.BaseHTTPRequestHandler):
        """A web pool that would serve anything, /metrics included."""

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"app")

        def log_message(self, *args):
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", port_factory()), Web)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with running_nginx(tmp_path, nginx, web.server_port) as server:
            assert server.request("GET", "/")[0].status == 200
            for path in ("/metrics", "/metrics?format=text", "//metrics", "/%6detrics"):
                response, body = server.request("GET", path)
                assert (response.status, body) == (404, "Not Found\n"), path
                assert response.getheader("X-Content-Type-Options") == "nosniff"
            assert server.request("GET", "/metrics-of-a-product")[0].status == 200
    finally:
        web.shutdown()
        web.server_close()


def test_errors_nginx_answers_itself_take_the_apps_forms(tmp_path, nginx):
    """The web pool is down (nothing listens on its port) and a body is over
    client_max_body_size: problem+json under /api, a phone-sized page
    elsewhere, never nginx's own page."""
    from conftest import free_port

    too_large = {"Content-Length": str(200 * 1024 * 1024)}
    with running_nginx(tmp_path, nginx, free_port()) as server:
        for method, path, headers, status in [
            ("GET", "/api/products", None, 503),
            ("GET", "/api", None, 503),
            ("PUT", "/api/products/1/image", too_large, 413),
        ]:
            response, body = server.request(method, path, headers)
            assert response.status == status
            assert response.getheader("Content-Type") == "application/problem+json"
            problem = json.loads(body)
            assert problem["status"] == status
            assert problem["type"] == "about:blank"
        response, body = server.request("GET", "/api/products")
        assert response.getheader("Retry-After") == "30"
        assert "try again in a minute" in json.loads(body)["detail"]
        for method, path, headers, status, says in [
            ("GET", "/", None, 503, "unavailable for a moment"),
            ("POST", "/signup", too_large, 413, "That was too large"),
        ]:
            response, body = server.request(method, path, headers)
            assert response.status == status
            assert response.getheader("Content-Type") == "text/html"
            assert '<meta name="viewport"' in body
            assert says in body
            assert "nginx" not in body


def test_a_web_pool_that_answers_too_late_is_a_504_that_says_to_check(tmp_path, nginx):
    """A 504 stays a 504 (the request may have been carried out), in the app's
    forms. The web pool here accepts and never answers; the rendered
    configuration waits 1 s for it instead of nginx's 60."""
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(16)

    def impatient(site):
        return site.replace(
            "proxy_pass http://storefront_web;",
            "proxy_read_timeout 1s; proxy_pass http://storefront_web;",
        )

    try:
        with running_nginx(
            tmp_path, nginx, silent.getsockname()[1], impatient
        ) as server:
            for path, kind in [
                ("/api/orders", "application/problem+json"),
                ("/orders", "text/html"),
            ]:
                response, body = server.request("POST", path)
                assert response.status == 504
                assert response.getheader("Content-Type") == kind
                assert "may still have been carried out" in body
                assert response.getheader("Retry-After") is None
    finally:
        silent.close()
