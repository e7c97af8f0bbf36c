"""The shipped topology (``make up``) through a PostgreSQL outage: every
process stays up, the worker waits it out and says so, and the shop works
again, mail included, once the database answers."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import sqlalchemy as sa

from .deployment import sign_up_and_activate
from .deployment import start_topology
from .deployment import stop_topology


def ready(topology):
    request = urllib.request.Request(
        f"{topology.url}/readyz", headers={"Host": f"{topology.host}:{topology.port}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_database_outage_under_make_up_stops_nothing(
    tmp_path,
    postgres_server,
    postgres_relay,
    redis_server,
    nginx,
    port_factory,
    smtp_server,
):
    relayed = sa.make_url(postgres_server).set(
        host="127.0.0.1", port=postgres_relay.port
    )
    topology = start_topology(
        tmp_path,
        relayed.render_as_string(hide_password=False),
        redis_server,
        port_factory,
        SMTP_URL=smtp_server.url,
    )
    try:
        pids = json.loads((topology.run_dir / "pids.json").read_text())
        postgres_relay.cut()
        deadline = time.monotonic() + 30
        while ready(topology) != 503:
            assert time.monotonic() < deadline, "readyz never noticed"
            time.sleep(0.5)
        time.sleep(5)  # several polls of the worker
        postgres_relay.restore()
        deadline = time.monotonic() + 60
        while ready(topology) != 200:
            assert time.monotonic() < deadline, "never ready again"
            time.sleep(0.5)

        assert json.loads((topology.run_dir / "pids.json").read_text()) == pids
        for pid, _ in pids.values():
            os.kill(pid, 0)  # still the same, running process
        assert topology.process.poll() is None
        deadline = time.monotonic() + 40  # the worker may be in its backoff
        while "The outbox worker works again." not in topology.log.read_text():
            assert time.monotonic() < deadline, topology.log.read_text()[-3000:]
            time.sleep(0.5)
        log = topology.log.read_text()
        assert log.count("The outbox worker waits for an outage to end") == 1, log
        assert "exited with" not in log

        sign_up_and_activate(topology, "after-the-outage@example.com")
        deadline = time.monotonic() + 30
        while not any(
            m["To"] == "after-the-outage@example.com" for m in smtp_server.messages
        ):
            assert time.monotonic() < deadline, "the activation mail never came"
            time.sleep(0.2)
    finally:
        stop_topology(topology, relayed.render_as_string(hide_password=False))
