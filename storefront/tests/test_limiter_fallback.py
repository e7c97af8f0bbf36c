"""The rate limits of login, sign-up and reset while their Redis is down: the
forms answer as usual, the limits count in this process's memory meanwhile and
say so in the log, and Redis takes over again once it answers."""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import time

import pytest
import redis

from storefront.extensions import limiter

from .conftest import add_user
from .conftest import csrf_token
from .conftest import mail_bodies

FALLBACK = "Rate limit storage unreachable - falling back to in-memory storage"
RECOVERED = "Rate limit storage recovered"
EMAIL = "ada@example.com"


def post(client, path, data):
    # The sign-up page has a form for anyone; /login redirects the logged in.
    token = csrf_token(client, "/signup")
    return client.post(path, data={**data, "csrf_token": token})


def log_in(client, password="storefront"):
    return post(client, "/login", {"email": EMAIL, "password": password})


def login_counter(server):
    """The key of the login limit in Redis (the test client's one address)."""
    keys = [
        key.decode() for key in server.scan_iter("LIMITS:*") if b"accounts.login" in key
    ]
    assert len(keys) == 1, keys
    return keys[0]


@pytest.fixture(autouse=True)
def limiter_on_its_storage_after():
    """The limiter is one object for every app of the process, and its fall-back
    outlives a new app's ``init_app``: later tests must not start on it."""
    yield
    limiter._storage_dead = False


@pytest.fixture
def server(redis_process):
    client = redis.Redis.from_url(redis_process.url)
    yield client
    client.close()


def test_accounts_work_while_redis_is_down_and_limits_go_back_to_redis(
    app_factory, redis_process, server, caplog
):
    caplog.set_level(logging.INFO, logger="flask-limiter")
    app = app_factory(REDIS_URL=redis_process.url)
    assert app.config["RATELIMIT_STORAGE_URI"] == redis_process.url
    add_user(app, EMAIL)
    client = app.test_client()
    assert log_in(client, password="guess").status_code == 400
    counter = login_counter(server)
    assert int(server.get(counter)) == 1, "the limits count in Redis"
    assert FALLBACK not in caplog.text

    redis_process.stop()
    login = log_in(client)
    assert login.status_code == 303, login.get_data(as_text=True)
    assert login.headers["Location"] == "/"
    shop = client.get("/").get_data(as_text=True)
    assert "Welcome back." in shop
    assert "Log out" in shop
    assert caplog.text.count(FALLBACK) == 1, "said once, when it falls back"

    signup = post(client, "/signup", {"email": "grace@example.com"})
    assert signup.status_code == 303
    assert signup.headers["Location"] == "/login"
    reset = post(client, "/reset", {"email": EMAIL})
    assert reset.status_code == 303
    assert reset.headers["Location"] == "/login"
    bodies = mail_bodies(app)
    assert len(bodies) == 2
    assert "/activate/" in bodies[0]
    assert "/reset/" in bodies[1]

    # The login limit (10 a minute) still holds, counted in memory from the
    # fall-back on: the attempt made while Redis answered is not in it.
    statuses = [log_in(client, password="guess").status_code for _ in range(10)]
    assert statuses == [400] * 9 + [429]
    assert caplog.text.count(FALLBACK) == 1

    redis_process.start()
    assert int(server.get(counter)) == 1, "nothing was counted in Redis meanwhile"
    # Flask-Limiter checks the storage again after 1, 2, 4... 32 s.
    deadline = time.monotonic() + 70
    while RECOVERED not in caplog.text:
        assert time.monotonic() < deadline, "the limiter never went back to Redis"
        client.get("/login")
        time.sleep(0.2)
    # Back on Redis's count (1), not the memory's (10, refused).
    assert log_in(client, password="guess").status_code == 400
    assert int(server.get(counter)) == 2
    assert caplog.text.count(FALLBACK) == 1


def test_a_redis_that_hangs_costs_a_login_about_a_second(app_factory, caplog):
    """A server that accepts connections and never answers: each request waits
    for the storage's short timeouts, not redis-py's default 5 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        app = app_factory(RATELIMIT_STORAGE_URI=url)
        assert app.config["RATELIMIT_STORAGE_OPTIONS"] == {
            "socket_connect_timeout": 0.5,
            "socket_timeout": 0.5,
        }
        add_user(app, EMAIL)
        client = app.test_client()
        token = csrf_token(client, "/login")
        started = time.monotonic()
        login = client.post(
            "/login",
            data={"email": EMAIL, "password": "storefront", "csrf_token": token},
        )
        elapsed = time.monotonic() - started
    assert login.status_code == 303
    assert FALLBACK in caplog.text
    # The failed request and Flask-Limiter's health check: two timeouts.
    assert elapsed < 3, f"the login took {elapsed:.1f} s"


FALLBACK_SCRIPT = """
import sys
from storefront import create_app
from storefront.extensions import db
from storefront.models import Base

app = create_app({
    "SECRET_KEY": "test secret",
    "DATABASE_URL": "sqlite:///" + sys.argv[1],
    "RATELIMIT_STORAGE_URI": sys.argv[2],
    "WTF_CSRF_ENABLED": False,
})
with app.app_context():
    Base.metadata.create_all(db.engine)
answer = app.test_client().post("/login", data={"email": "a@example.com"})
print(answer.status_code)
"""


def test_the_fall_back_reaches_stderr_with_no_logging_configured(tmp_path, unused_port):
    """Outside pytest nothing configures the root logger (gunicorn and
    ``flask run`` do not): the warning must still be written somewhere."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FALLBACK_SCRIPT,
            str(tmp_path / "shop.sqlite"),
            f"redis://127.0.0.1:{unused_port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.stdout.strip() == "400", result.stderr
    # The app's log handler, with the id of the request that fell back.
    assert re.search(
        rf"WARNING in flask-limiter \[[0-9a-f]{{32}}\]: {FALLBACK}", result.stderr
    ), result.stderr
