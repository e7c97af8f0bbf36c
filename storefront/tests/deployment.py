"""The shipped topology as the tests start it: ``deploy/up.py`` (what ``make up``
runs) on free ports, PostgreSQL and Redis of their own, no SMTP server (the
documented default), and clients that talk to it over HTTP through nginx."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import socket
import time
import typing as t
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .conftest import CSRF

ROOT = Path(__file__).resolve().parents[2]


class Topology:
    """One running ``deploy/up.py`` (see :mod:`deploy.launch`) and what the
    tests need to know of it."""

    def __init__(self, launched, database_url, redis_url):
        self.launched = launched
        self.process = launched.process
        self.url = launched.url
        self.run_dir = launched.run_dir
        self.log = launched.log
        self.pids = launched.pids
        self.database_url = database_url
        self.redis_url = redis_url
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def mails(self):
        """Every mail in the outbox, oldest first: (recipient, subject, body,
        sent)."""
        import psycopg

        with psycopg.connect(self.database_url) as connection:
            rows = connection.execute(
                "SELECT payload, sent_at FROM outbox_message ORDER BY id"
            ).fetchall()
        return [
            (mail["recipient"], mail["subject"], mail["body"], sent is not None)
            for mail, sent in ((json.loads(payload), sent) for payload, sent in rows)
        ]

    def link_in_mail(self, recipient, subject, timeout=10):
        """The path of the public link in the newest such mail."""
        deadline = time.monotonic() + timeout
        while True:
            for to, title, body, _ in reversed(self.mails()):
                if to == recipient and subject in title:
                    found = re.search(re.escape(self.url) + r"(/\S+)", body)
                    assert found, f"no link to {self.url} in: {body}"
                    return found[1]
            assert time.monotonic() < deadline, f"no mail {subject!r} to {recipient}"
            time.sleep(0.1)

    def metrics(self):
        """One scrape of the web pool's ``/metrics`` (loopback, so allowed):
        ``{(name, sorted label pairs): value}`` over every process."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.launched.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def raw(self, request: bytes, timeout: float = 5) -> bytes:
        """Send ``request`` as it is and return all nginx answered (nothing
        when it closed the connection without an answer)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received


def start_topology(tmp, postgres_server, redis_server, port_factory, **settings):
    """``deploy/up.py`` on a database of its own; ``settings`` are more
    ``STOREFRONT_*`` variables (without the prefix)."""
    import redis
    import sqlalchemy as sa
    from deploy.launch import launch

    database = f"storefront_{uuid.uuid4().hex[:10]}"
    database_url = sa.make_url(postgres_server).set(database=database)
    # A database of its own: the other modules' fixtures flush the default one.
    redis_url = redis_server.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(redis_url).flushdb()
    env = {
        **os.environ,
        "STOREFRONT_DATABASE_URL": database_url.render_as_string(hide_password=False),
        "STOREFRONT_REDIS_URL": redis_url,
        "WEB_WORKERS": "2",
    }
    for unset in ("SMTP_URL", "DEV_MAILBOX", "PUBLIC_URL"):
        env.pop(f"STOREFRONT_{unset}", None)
    env.update({f"STOREFRONT_{name}": value for name, value in settings.items()})
    launched = launch(
        listen_port=port_factory(),
        web_port=port_factory(),
        stream_port=port_factory(),
        run_dir=tmp / "run",
        env=env,
        timeout=90,
    )
    plain_url = database_url.set(drivername="postgresql")
    return Topology(
        launched, plain_url.render_as_string(hide_password=False), redis_url
    )


def stop_topology(topology, postgres_server):
    import psycopg
    import sqlalchemy as sa
    from deploy.launch import stop

    left = stop(topology.launched, timeout=60)
    assert left == [], f"still running: {', '.join(left)}"
    database = sa.make_url(topology.database_url).database
    admin = sa.make_url(postgres_server).set(database="postgres")
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True
    ) as c:
        c.execute(f'DROP DATABASE "{database}" WITH (FORCE)')


def wait_for(condition, timeout=30.0, what=lambda: "timed out"):
    """Poll ``condition`` until it holds; fail with ``what()`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def queue_mail(engine, subject):
    """An outbox row for a mail that is due now, as the shop would queue it."""
    import datetime as dt

    from flask_patterns.outbox import outbox_table

    now = dt.datetime.now(dt.timezone.utc)
    with engine.begin() as connection:
        connection.execute(
            outbox_table.insert().values(
                key=str(uuid.uuid4()),
                kind="mail",
                payload=json.dumps(
                    {"recipient": "ada@example.com", "subject": subject, "body": "x\n"}
                ),
                created_at=now,
                available_at=now,
                attempts=0,
            )
        )


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: t.Any, **kwargs: t.Any) -> None:
        return None


class Browser:
    """Cookies and CSRF tokens over plain HTTP, as a browser would send them."""

    def __init__(self, base, *, follow_redirects=True):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        handlers: list[t.Any] = [urllib.request.HTTPCookieProcessor(self.cookies)]
        if not follow_redirects:
            handlers.append(NoRedirects())
        self.opener = urllib.request.build_opener(*handlers)

    def open(self, request):
        try:
            response = self.opener.open(request, timeout=10)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            return response.status, response.geturl(), response.read().decode()

    def get(self, path, headers=None):
        return self.open(
            urllib.request.Request(self.base + path, headers=headers or {})
        )

    def post(self, path, form, *, token_from, headers=None):
        token = CSRF.search(self.get(token_from)[2])[1]
        data = urllib.parse.urlencode({**form, "csrf_token": token}).encode()
        return self.open(
            urllib.request.Request(
                self.base + path, data=data, method="POST", headers=headers or {}
            )
        )

    def cookie(self, name):
        return next((c for c in self.cookies if c.name == name), None)


def sign_up_and_activate(topology, email, password="correct horse"):
    """A new customer who signed up and chose a password on the activation
    page (which logs in); returns their browser."""
    browser = Browser(topology.url)
    browser.post("/signup", {"email": email}, token_from="/signup")
    link = topology.link_in_mail(email, "Activate")
    status, where, _ = browser.post(link, {"password": password}, token_from=link)
    assert (status, where) == (200, topology.url + "/"), (status, where)
    return browser
