"""The outbox worker, as deployed (``flask --app storefront outbox work``),
through a PostgreSQL that goes away and comes back: it waits, says so once each
way, delivers what is due once the database answers, and stops cleanly on
SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from .deployment import queue_mail
from .deployment import wait_for

FLASK = Path(sys.executable).parent / "flask"


def test_the_worker_waits_out_a_database_outage_and_stops_cleanly(
    app_factory, postgres_url, postgres_relay, smtp_server, tmp_path
):
    direct = sa.make_url(postgres_url)
    relayed = direct.set(host="127.0.0.1", port=postgres_relay.port)
    app_factory(DATABASE_URL=direct.render_as_string(hide_password=False))
    engine = sa.create_engine(direct.set(drivername="postgresql+psycopg"))
    queue_mail(engine, "before the outage")
    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": relayed.render_as_string(hide_password=False),
        "STOREFRONT_SMTP_URL": smtp_server.url,
        "STOREFRONT_SECRET_KEY": "worker test",
        "STOREFRONT_PUBLIC_URL": "https://shop.example.com",
    }
    env.pop("STOREFRONT_DEV_MAILBOX", None)
    log = (tmp_path / "worker.log").open("w+")
    worker = subprocess.Popen(
        [str(FLASK), "--app", "storefront", "outbox", "work", "--interval", "0.2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        subjects = lambda: [m["Subject"] for m in smtp_server.messages]  # noqa: E731
        wait_for(lambda: subjects() == ["before the outage"])

        postgres_relay.cut()
        queue_mail(engine, "during the outage")
        time.sleep(4)
        assert worker.poll() is None, "the worker is still running"
        assert subjects() == ["before the outage"]
        postgres_relay.restore()
        wait_for(lambda: subjects() == ["before the outage", "during the outage"])

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        engine.dispose()
    log.seek(0)
    output = log.read()
    log.close()
    assert output.count("waits for an outage to end") == 1, output
    assert output.count("works again") == 1, output
    assert "Aborted!" not in output
    assert "Traceback" not in output


def test_mail_waits_out_an_smtp_outage_and_goes_out_once_afterwards(
    app_factory, unused_port
):
    from aiosmtpd.controller import Controller
    from conftest import SmtpSink

    from .test_purchase import buy
    from .test_purchase import logged_in
    from .test_purchase import product_id

    sink = SmtpSink(unused_port)
    shop = app_factory(SMTP_URL=sink.url, PATTERNS_OUTBOX_BACKOFF=0.05)
    shop.test_cli_runner().invoke(args=["demo"])
    client = logged_in(shop)
    for slug in ("travel-mug", "espresso-cup"):  # SMTP is not there yet
        assert buy(client, product_id(shop, slug)).status_code == 303
    runner = shop.test_cli_runner()
    for _ in range(3):
        time.sleep(0.2)
        runner.invoke(args=["outbox", "work", "--once"])  # fails, backs off
    assert sink.messages == []
    status = runner.invoke(args=["outbox", "status"]).output
    assert status.startswith("2 message(s) pending, the oldest for ")

    controller = Controller(sink, hostname="127.0.0.1", port=unused_port)
    controller.start()
    try:
        deadline = time.monotonic() + 20
        while len(sink.messages) < 2:
            assert time.monotonic() < deadline, "not delivered"
            time.sleep(0.3)
            runner.invoke(args=["outbox", "work", "--once"])
        runner.invoke(args=["outbox", "work", "--once"])
    finally:
        controller.stop()
    ids = [m["Message-ID"] for m in sink.messages]
    assert len(ids) == len(set(ids)) == 2, "each once, each with its own id"
    assert all(i.endswith("@storefront>") for i in ids)
    assert runner.invoke(args=["outbox", "status"]).output.startswith(
        "0 message(s) pending"
    )
