"""Request ids: kept from a sane ``X-Request-ID``, replaced when hostile,
returned in the response, carried by the observer, and put in every log line by
the filter and the JSON formatter."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading

import pytest
from flask import Flask

from flask_patterns import observe
from flask_patterns.logs import current_request_id
from flask_patterns.logs import JsonFormatter
from flask_patterns.logs import RequestIdFilter
from flask_patterns.logs import RequestIdObserver
from flask_patterns.logs import RequestIds
from flask_patterns.logs import TEXT_FORMAT

from .log_lines import log_lines

shop = logging.getLogger("tests.shop")
NEW_ID = re.compile(r"[0-9a-f]{32}")


def make_app(**config):
    app = Flask("request_ids")
    app.config.update(config)

    @app.before_request
    def registered_before_the_extension():
        shop.info("before the request")

    RequestIds(app)

    @app.get("/")
    def index():
        shop.info("in the view")
        return current_request_id() or ""

    @app.teardown_request
    def registered_after_the_extension(error):
        shop.info("tearing down")

    return app


@pytest.fixture
def lines():
    with log_lines("tests.shop") as lines:
        yield lines


def test_a_sane_incoming_id_is_kept_returned_and_in_every_line_of_the_request(
    lines,
):
    sent = "nginx-1f2e:3.a_b"
    response = make_app().test_client().get("/", headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == sent
    assert response.text == sent
    written = [(line["message"], line["request_id"]) for line in lines.all()]
    assert written == [
        ("before the request", sent),
        ("in the view", sent),
        ("tearing down", sent),
    ]


@pytest.mark.parametrize(
    "hostile",
    [
        'abc\r\n{"level": "ERROR", "message": "forged"}',
        "x" * 1024,
        "two words",
        "tab\tseparated",
        'quote"d',
        "caf\u00e9",
        "",
    ],
    ids=["crlf", "1kb", "spaces", "tab", "quote", "non-ascii", "empty"],
)
def test_a_hostile_incoming_id_is_replaced_by_a_new_one(lines, hostile):
    client = make_app().test_client()
    response = client.get("/", environ_overrides={"HTTP_X_REQUEST_ID": hostile})
    request_id = response.headers["X-Request-ID"]
    assert NEW_ID.fullmatch(request_id)
    assert lines.one("in the view")["request_id"] == request_id
    assert len(lines.raw()) == 3, "no line was forged"
    if hostile:
        assert hostile not in "\n".join(lines.raw())


def test_an_id_may_have_128_characters_not_129(lines):
    client = make_app().test_client()
    longest = "a" * 128
    assert client.get("/", headers={"X-Request-ID": longest}).text == longest
    assert client.get("/", headers={"X-Request-ID": longest + "a"}).text != longest


def test_each_request_without_an_id_gets_a_new_one():
    client = make_app().test_client()
    ids = {client.get("/").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    assert all(NEW_ID.fullmatch(request_id) for request_id in ids)


def test_an_app_that_trusts_no_client_gives_every_request_a_new_id():
    client = make_app(PATTERNS_REQUEST_ID_TRUST_INCOMING=False).test_client()
    response = client.get("/", headers={"X-Request-ID": "chosen-by-client"})
    assert NEW_ID.fullmatch(response.headers["X-Request-ID"])


def test_another_header_can_carry_the_id():
    client = make_app(PATTERNS_REQUEST_ID_HEADER="X-Correlation-ID").test_client()
    response = client.get("/", headers={"X-Correlation-ID": "corr-7"})
    assert response.headers["X-Correlation-ID"] == "corr-7"
    assert "X-Request-ID" not in response.headers


def test_a_failed_request_returns_its_id_too(lines):
    app = make_app()

    @app.get("/broken")
    def broken():
        raise RuntimeError("broken view")

    response = app.test_client().get("/broken", headers={"X-Request-ID": "r-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "r-500"
    (logged,) = [line for line in lines.all() if line.get("exception")]
    assert logged["request_id"] == "r-500"
    assert "RuntimeError: broken view" in logged["exception"]


def test_there_is_no_id_after_the_request_nor_in_a_thread_it_started():
    app = make_app()
    seen = []

    @app.get("/thread")
    def thread():
        worker = threading.Thread(target=lambda: seen.append(current_request_id()))
        worker.start()
        worker.join()
        return ""

    app.test_client().get("/thread", headers={"X-Request-ID": "r-1"})
    assert seen == [None]
    assert current_request_id() is None


def test_registering_twice_is_refused():
    app = make_app()
    with pytest.raises(RuntimeError, match="already registered"):
        RequestIds(app)


def test_the_observer_is_added_once_per_process():
    make_app(), make_app()
    added = [o for o in observe.observers() if isinstance(o, RequestIdObserver)]
    assert len(added) == 1


def test_the_observer_carries_the_id_and_sets_it_around_resumed_work():
    observer = RequestIdObserver()
    app = make_app()
    carried = []

    @app.get("/carry")
    def carry():
        carried.append(observer.carry())
        return ""

    app.test_client().get("/carry", headers={"X-Request-ID": "r-9"})
    assert carried == [{"request_id": "r-9"}]
    assert observer.carry() == {}, "nothing to carry outside a request"
    with observer.resume("work", carried[0], {}):
        assert current_request_id() == "r-9"
        with resumed("r-10"):
            assert current_request_id() == "r-10"
        assert current_request_id() == "r-9"
    assert current_request_id() is None
    assert observer.resume("work", {}, {}) is None
    assert observer.resume("work", {"request_id": "bad\nid"}, {}) is None, (
        "a stored id is checked too"
    )


def resumed(request_id):
    return RequestIdObserver().resume("work", {"request_id": request_id}, {})


def record(message="hello", **extra):
    made = logging.LogRecord(
        "tests.shop", logging.WARNING, __file__, 1, message, (), None
    )
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_fields_and_stays_one_line():
    formatter = JsonFormatter()
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        failing = record("two\nlines", exc_info=sys.exc_info())
    line = formatter.format(failing)
    assert "\n" not in line
    fields = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["time"])
    assert fields["level"] == "WARNING"
    assert fields["logger"] == "tests.shop"
    assert fields["message"] == "two\nlines"
    assert fields["request_id"] is None
    assert fields["exception"].endswith("ValueError: bad\nvalue")
    assert "trace_id" not in fields, "no span is current"


def test_a_json_line_names_the_request_and_the_current_span():
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("tests")
    with resumed("r-span"), tracer.start_as_current_span("work") as span:
        fields = json.loads(JsonFormatter().format(record()))
    context = span.get_span_context()
    assert fields["request_id"] == "r-span"
    assert fields["trace_id"] == f"{context.trace_id:032x}"
    assert fields["span_id"] == f"{context.span_id:016x}"


def test_the_filter_puts_the_id_or_a_dash_and_keeps_one_given_as_extra():
    formatter = logging.Formatter(TEXT_FORMAT)
    id_filter = RequestIdFilter()
    plain, given = record("plain"), record("given", request_id="r-given")
    assert id_filter.filter(plain)
    assert id_filter.filter(given)
    assert formatter.format(plain).endswith("WARNING in tests.shop [-]: plain")
    assert formatter.format(given).endswith("[r-given]: given")
    with resumed("r-now"):
        current = record("current")
        id_filter.filter(current)
    assert formatter.format(current).endswith("[r-now]: current")
    assert json.loads(JsonFormatter().format(plain))["request_id"] is None
