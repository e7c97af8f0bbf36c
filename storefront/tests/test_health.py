from __future__ import annotations

import time

import pytest
import redis
import sqlalchemy as sa


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


TOKEN = "readiness probe token"
WITH_TOKEN = {"Authorization": f"Bearer {TOKEN}"}


def test_readyz_is_ok_on_the_embedded_default(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_shows_its_checks_to_a_holder_of_the_token(app_factory):
    client = app_factory(READYZ_TOKEN=TOKEN).test_client()
    response = client.get("/readyz", headers=WITH_TOKEN)
    assert response.json == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
    }
    for wrong in ("Bearer nope", f"Bearer {TOKEN}x", TOKEN, ""):
        answer = client.get("/readyz", headers={"Authorization": wrong})
        assert answer.json == {"status": "ok"}, wrong


def test_readyz_shows_no_checks_to_anyone_without_a_configured_token(client):
    response = client.get("/readyz", headers={"Authorization": "Bearer "})
    assert response.json == {"status": "ok"}


def test_readyz_follows_redis_going_away_and_coming_back(
    app_factory, redis_process, caplog
):
    client = app_factory(REDIS_URL=redis_process.url, READYZ_TOKEN=TOKEN).test_client()
    assert client.get("/readyz").status_code == 200

    redis_process.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    # The public learns nothing of hosts, ports or driver messages.
    assert down.json == {"status": "unavailable"}
    where = f"Redis at 127.0.0.1:{redis_process.port}"
    assert where in caplog.text, "the reason goes to the log"
    detailed = client.get("/readyz", headers=WITH_TOKEN)
    assert detailed.json["checks"]["database"] == "ok"
    assert where in detailed.json["checks"]["broker"]
    logged = caplog.text.count("the broker check fails")
    assert logged == 1, "logged once, not on every poll"

    redis_process.start()
    assert client.get("/readyz").status_code == 200
    assert "Ready again: the broker check passes." in caplog.text


def test_readyz_follows_postgres_going_away_and_coming_back(
    app_factory, postgres_url, postgres_relay, caplog
):
    url = sa.make_url(postgres_url).set(host="127.0.0.1", port=postgres_relay.port)
    app = app_factory(
        DATABASE_URL=url.render_as_string(hide_password=False), READYZ_TOKEN=TOKEN
    )
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    postgres_relay.cut()
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.json == {"status": "unavailable"}
    detailed = client.get("/readyz", headers=WITH_TOKEN).json
    assert detailed["checks"]["broker"] == "ok"
    assert detailed["checks"]["database"].startswith("OperationalError")
    assert "the database check fails: OperationalError" in caplog.text

    postgres_relay.restore()
    up = client.get("/readyz")
    assert up.status_code == 200, up.json


def readiness(app):
    answer = app.test_client().get("/readyz", headers=WITH_TOKEN)
    return answer.status_code, answer.json["checks"]["database"]


def test_readyz_fails_on_a_sqlite_file_opened_read_only(app_factory, tmp_path):
    writable = app_factory(READYZ_TOKEN=TOKEN)  # makes the schema
    assert readiness(writable) == (200, "ok")
    path = tmp_path / "shop.sqlite"
    read_only = app_factory(
        READYZ_TOKEN=TOKEN, DATABASE_URL=f"sqlite:///file:{path}?mode=ro&uri=true"
    )
    with read_only.app_context():
        from storefront.extensions import db

        refused = pytest.raises(sa.exc.OperationalError, match="readonly")
        with refused, db.engine.begin() as connection:
            connection.execute(sa.text("UPDATE product SET stock = stock"))
    assert readiness(read_only) == (503, "refuses writes: opened read-only (mode=ro)")


def test_readyz_fails_when_the_sqlite_disk_is_nearly_full(app_factory):
    # More free space asked for than any disk here has.
    app = app_factory(READYZ_TOKEN=TOKEN, READYZ_MIN_FREE_BYTES=2**62)
    status, reason = readiness(app)
    assert status == 503
    assert reason.startswith("refuses writes: ")
    assert reason.endswith(f"bytes free on its disk, under {2**62}")


def test_readyz_fails_on_a_read_only_postgresql(app_factory, postgres_url):
    writable = app_factory(READYZ_TOKEN=TOKEN, DATABASE_URL=postgres_url)
    assert readiness(writable) == (200, "ok")
    url = postgres_url + "%20-cdefault_transaction_read_only%3Don"
    app = app_factory(READYZ_TOKEN=TOKEN, DATABASE_URL=url)
    assert readiness(app) == (503, "refuses writes: transactions are read-only")


def test_readyz_follows_a_sentinel_failover(app_factory, sentinel_set):
    client = app_factory(REDIS_URL=sentinel_set.url).test_client()
    assert client.get("/readyz").status_code == 200

    sentinel_set.kill_primary()
    seen = []
    deadline = time.monotonic() + 60
    while not seen or seen[-1] != 200:
        assert time.monotonic() < deadline, f"never ready again: {seen[-5:]}"
        seen.append(client.get("/readyz").status_code)
        time.sleep(0.1)
    # Unready while the sentinels still named the dead primary, ready once
    # they promoted the replica.
    assert seen[0] == 503
    assert set(seen) == {503, 200}
    with redis.Redis(port=sentinel_set.replica) as promoted:
        assert promoted.info("replication")["role"] == "master"


def test_a_frozen_redis_costs_a_probe_and_a_page_one_short_timeout(
    app_factory, redis_process
):
    """A Redis that accepts connections and never answers (a hung server, a
    network that drops packets) makes the probe say so, and the feed page
    render without its history, each after one reply timeout (1 s), where
    redis-py's retries of timeouts made that 15 s and 46 s."""
    client = app_factory(REDIS_URL=redis_process.url, READYZ_TOKEN=TOKEN).test_client()
    assert client.get("/readyz").status_code == 200
    with redis_process.frozen():
        started = time.monotonic()
        probe = client.get("/readyz", headers=WITH_TOKEN)
        page = client.get("/activity")
        waited = time.monotonic() - started
    assert probe.status_code == 503
    assert probe.json["checks"]["broker"].endswith(
        f"127.0.0.1:{redis_process.port} failed: Timeout reading from"
        f" 127.0.0.1:{redis_process.port}"
    )
    assert page.status_code == 200
    assert "Recent activity cannot be shown right now." in page.text
    assert waited < 2 * 2.5, waited
    assert client.get("/readyz").status_code == 200
    assert "Recent activity cannot" not in client.get("/activity").text
