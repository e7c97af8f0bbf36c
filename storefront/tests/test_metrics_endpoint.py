"""``GET /metrics``: the library's metrics for a scraper on loopback or one
holding ``STOREFRONT_METRICS_TOKEN``, a 404 for everyone else; and under the
shipped topology, nginx's 404 and one scrape of the web pool for every
process."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storefront.metrics import is_loopback

from .conftest import csrf_token

COMMITS = ("flask_patterns_transactions_total", (("outcome", "commit"),))
SENT_MAIL = ("flask_patterns_outbox_deliveries_total", (("result", "sent"),))
PENDING = ("flask_patterns_outbox_messages", (("state", "pending"),))
STREAMS_OPEN = ("flask_patterns_streams_open", ())
EVENTS_SENT = ("flask_patterns_stream_events_sent_total", ())
OUTSIDER = {"REMOTE_ADDR": "203.0.113.7"}


def samples(text):
    """{(name, sorted labels): value} of an exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **request):
    response = client.get("/metrics", **request)
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    return samples(response.get_data(as_text=True))


def test_a_scraper_on_loopback_sees_the_shop_commit_and_send_mail(client):
    before = scrape(client)
    assert scrape(client)[COMMITS] == before[COMMITS], "a scrape commits nothing"
    response = client.post(
        "/signup", data={"email": "ada@example.com", "csrf_token": csrf_token(client)}
    )
    assert response.status_code == 303
    after = scrape(client)
    assert after[COMMITS] > before[COMMITS]
    assert after[SENT_MAIL] - before[SENT_MAIL] == 1, "the activation mail"
    assert after[PENDING] == 0
    assert after[("flask_patterns_broker_up", ())] == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1"])
def test_every_loopback_address_may_scrape(client, address):
    scrape(client, environ_base={"REMOTE_ADDR": address})


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer anything"}, {"Authorization": ""}]
)
def test_anyone_else_gets_a_404_when_no_token_is_set(client, headers):
    response = client.get("/metrics", headers=headers, environ_base=OUTSIDER)
    assert response.status_code == 404
    assert b"flask_patterns" not in response.data


def test_the_bearer_of_the_metrics_token_may_scrape_from_anywhere(
    app_factory, monkeypatch
):
    monkeypatch.setenv("STOREFRONT_METRICS_TOKEN", "s3cret token")
    client = app_factory().test_client()
    for wrong in (
        "",
        "s3cret",
        "Bearer s3cret",
        "Bearer s3cret token2",
        "s3cret token",
    ):
        response = client.get(
            "/metrics", headers={"Authorization": wrong}, environ_base=OUTSIDER
        )
        assert response.status_code == 404, wrong
    right = {"Authorization": "Bearer s3cret token"}
    assert COMMITS in scrape(client, headers=right, environ_base=OUTSIDER)


def test_a_scraper_may_name_the_pool_instead_of_the_public_host(app_factory):
    client = app_factory(PUBLIC_URL="https://shop.example.com").test_client()
    pool = "http://127.0.0.1:8001"
    assert client.get("/", base_url=pool).status_code == 400, "an untrusted host"
    assert COMMITS in scrape(client, base_url=pool)
    public = "https://shop.example.com"
    assert (
        client.get("/metrics", base_url=public, environ_base=OUTSIDER).status_code
        == 404
    )
    assert client.post("/metrics", base_url=public).status_code == 404


def test_behind_a_proxy_the_forwarded_client_decides(app_factory):
    client = app_factory(PROXY_HOPS=1).test_client()
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    assert client.get("/metrics", headers=forwarded).status_code == 404
    scrape(client, headers={"X-Forwarded-For": "127.0.0.1"})


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("::ffff:10.0.0.1", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_is_127_0_0_0_8_and_1(address, loopback):
    assert is_loopback(address) is loopback


def get(url, host):
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_through_nginx_it_is_a_404_and_the_web_pool_shows_every_process(topology):
    from flask_patterns.streams import RedisBroker

    from .deployment import wait_for

    host = f"{topology.host}:{topology.port}"
    assert get(f"{topology.url}/metrics", host)[0] == 404
    web = f"http://127.0.0.1:{topology.launched.web_port}/metrics"
    status, text = get(web, host)
    assert status == 200
    before = samples(text)

    stream = http.client.HTTPConnection(topology.host, topology.port, timeout=30)
    stream.request("GET", "/streams/activity")
    assert stream.getresponse().status == 200
    broker = RedisBroker(topology.redis_url)
    now = {}

    def streamed():
        broker.publish("activity", {"text": "counted"})
        now.update(samples(get(web, host)[1]))
        return now[STREAMS_OPEN] >= 1 and now[EVENTS_SENT] > before[EVENTS_SENT]

    # Written by the stream pool, served by a web worker.
    wait_for(streamed, 30, lambda: f"{now.get(STREAMS_OPEN)} open")
    broker.close()
    stream.close()
    written = {path.name for path in topology.launched.metrics_dir.glob("*.db")}
    for name in ("worker", "relay"):
        assert f"counter_{topology.pids[name]}.db" in written, written
