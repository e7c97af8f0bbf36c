"""The outbox worker under ``make up``, SIGKILLed in the middle of an SMTP
delivery: up.py starts it again, the interrupted mail goes out again once its
lease runs out, and every mail arrives at least once, a repeat only with the
same ``Message-ID``; the web pool's ``/metrics`` follows the backlog and the
worker's deliveries."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import threading

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from conftest import SmtpSink

from .deployment import queue_mail
from .deployment import start_topology
from .deployment import stop_topology
from .deployment import wait_for

LEASE = 3
PENDING = ("flask_patterns_outbox_messages", (("state", "pending"),))
OLDEST = ("flask_patterns_outbox_oldest_pending_age_seconds", ())
SENT = ("flask_patterns_outbox_deliveries_total", (("result", "sent"),))


class StallingSink(SmtpSink):
    """Keeps each message as it arrives and, while :attr:`stalled` is set,
    holds back its "250": the server has the mail, the client does not know."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.stalled = threading.Event()
        self.holding = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        reply = await super().handle_DATA(server, session, envelope)
        while self.stalled.is_set():
            self.holding.set()
            await asyncio.sleep(0.05)
        return reply


def test_a_worker_killed_while_it_delivers_is_restarted_and_no_mail_is_lost(
    tmp_path, postgres_server, redis_server, nginx, port_factory
):
    sink = StallingSink(port_factory())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    topology = start_topology(
        tmp_path,
        postgres_server,
        redis_server,
        port_factory,
        SMTP_URL=sink.url,
        PATTERNS_OUTBOX_LEASE=str(LEASE),
    )
    pid_file = topology.run_dir / "pids.json"
    engine = sa.create_engine(
        sa.make_url(topology.database_url).set(drivername="postgresql+psycopg")
    )
    try:
        pids = json.loads(pid_file.read_text())
        sink.stalled.set()
        subjects = [f"mail {n}" for n in range(5)]
        for subject in subjects:
            queue_mail(engine, subject)
        wait_for(sink.holding.is_set, 30, lambda: topology.log.read_text()[-2000:])
        assert [m["Subject"] for m in sink.messages] == ["mail 0"]
        stalled = topology.metrics()
        assert stalled[PENDING] == 5
        assert stalled[OLDEST] > 0
        assert stalled[SENT] == 0

        killed = pids["worker"][0]
        os.kill(killed, signal.SIGKILL)
        wait_for(
            lambda: json.loads(pid_file.read_text())["worker"][0] != killed,
            30,
            lambda: topology.log.read_text()[-2000:],
        )
        sink.stalled.clear()

        def all_sent():
            return all(sent for *_, sent in topology.mails())

        wait_for(
            all_sent, 60, lambda: f"{topology.mails()}\n{topology.log.read_text()}"
        )
        # The worker's deliveries, the killed one's lost with it, served by
        # the web pool: the processes share one metrics directory.
        done = topology.metrics()
        assert done[SENT] == len(subjects)
        assert done[PENDING] == 0
        assert done[OLDEST] == 0
        received = collections.defaultdict(set)
        for message in sink.messages:
            received[message["Subject"]].add(message["Message-ID"])
        assert sorted(received) == subjects, "every mail at least once"
        assert all(len(ids) == 1 for ids in received.values()), received
        repeated = collections.Counter(m["Subject"] for m in sink.messages)
        assert repeated["mail 0"] == 2, "the interrupted one again, after its lease"
        assert sum(repeated.values()) == len(subjects) + 1, repeated

        log = topology.log.read_text()
        assert "make up: worker exited with -9; starting it again in 1 s." in log
        now = json.loads(pid_file.read_text())
        assert {k: v for k, v in now.items() if k != "worker"} == {
            k: v for k, v in pids.items() if k != "worker"
        }, "nothing else was restarted"
        assert topology.process.poll() is None
        topology.pids["worker"] = now["worker"][0]
    finally:
        sink.stalled.clear()
        engine.dispose()
        stop_topology(topology, postgres_server)
        controller.stop()
