"""Request ids through the shipped deployment (``make up``): nginx passes the
client's sane ``X-Request-ID`` or its own ``$request_id`` to both pools, the app
answers with it, and nginx's access log and the pools' JSON lines name it."""

from __future__ import annotations

import http.client
import json
import re
import uuid

from .deployment import wait_for

NGINX_ID = re.compile(r"[0-9a-f]{32}")


def get(topology, path, **headers):
    connection = http.client.HTTPConnection(topology.host, topology.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("X-Request-ID")
    finally:
        connection.close()


def nginx_line(topology, path):
    """nginx's access log line for ``path``, once written."""
    access_log = topology.run_dir / "nginx-access.log"
    found = []

    def written():
        found[:] = [
            line for line in access_log.read_text().splitlines() if path in line
        ]
        return bool(found)

    wait_for(written, 10, lambda: access_log.read_text()[-2000:])
    (line,) = found
    return line


def pool_lines(topology, path):
    """The pools' JSON access lines for ``path``."""
    lines = []
    for text in topology.log.read_text().splitlines():
        if text.startswith("{") and path in text:
            line = json.loads(text)
            if line["logger"] == "gunicorn.access":
                lines.append(line)
    return lines


def test_a_request_without_an_id_gets_nginx_s_which_both_logs_and_the_app_name(
    topology,
):
    path = f"/healthz?probe={uuid.uuid4().hex}"
    status, request_id = get(topology, path)
    assert status == 200
    assert NGINX_ID.fullmatch(request_id)
    assert nginx_line(topology, path).endswith(f"request_id={request_id}")
    wait_for(lambda: pool_lines(topology, path), 10)
    (access,) = pool_lines(topology, path)
    assert access["request_id"] == request_id


def test_a_client_s_sane_id_is_kept_and_a_hostile_one_replaced_by_nginx_s(topology):
    path = f"/healthz?probe={uuid.uuid4().hex}"
    assert get(topology, path, **{"X-Request-ID": "client-42"}) == (200, "client-42")
    assert nginx_line(topology, path).endswith("request_id=client-42")

    path = f"/healthz?probe={uuid.uuid4().hex}"
    status, request_id = get(topology, path, **{"X-Request-ID": "a b " + "c" * 200})
    assert status == 200
    assert NGINX_ID.fullmatch(request_id)
    assert nginx_line(topology, path).endswith(f"request_id={request_id}")


def test_the_stream_pool_gets_the_request_id_too(topology):
    path = f"/streams/activity?probe={uuid.uuid4().hex}"
    status, request_id = get(topology, path, Accept="text/event-stream")
    assert status == 200
    assert NGINX_ID.fullmatch(request_id)
    assert nginx_line(topology, path).endswith(f"request_id={request_id}")
