from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import uuid
from dataclasses import dataclass

import pytest
from flask import Flask
from flask import jsonify
from flask import render_template_string
from flask import Response

from flask_patterns.responses import is_json_object
from flask_patterns.responses import JSONResponses
from flask_patterns.responses import ObjectJSONProvider


class Product:
    def __init__(self, id: int, name: str) -> None:
        self.id = id
        self.name = name

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name}


@dataclass
class Line:
    product: Product
    quantity: int


@dataclass
class Cart:
    lines: list[Line]
    note: str | None = None


class Opaque:
    pass


@pytest.fixture
def app() -> Flask:
    app = Flask("responses")
    app.testing = True
    JSONResponses(app)

    @app.get("/product")
    def product() -> object:
        return Product(1, "Mug")

    @app.get("/cart")
    def cart() -> object:
        return Cart([Line(Product(1, "Mug"), 2)])

    @app.get("/products")
    def products() -> object:
        return [Product(1, "Mug"), Product(2, "Kettle")]

    @app.get("/by-name")
    def by_name() -> object:
        return {"mug": Product(1, "Mug")}

    @app.post("/product")
    def create() -> object:
        return Product(3, "Grinder"), 201

    @app.put("/product")
    def replace() -> object:
        return Product(3, "Grinder"), 200, {"Location": "/product/3"}

    @app.get("/opaque")
    def opaque() -> object:
        return Opaque()

    @app.get("/nested-opaque")
    def nested_opaque() -> object:
        return {"thing": Opaque()}

    return app


@pytest.fixture
def client(app):
    return app.test_client()


def test_an_object_with_to_json_becomes_a_json_response(client):
    response = client.get("/product")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"id": 1, "name": "Mug"}


def test_a_dataclass_serializes_field_by_field_with_nested_objects(client):
    assert client.get("/cart").get_json() == {
        "lines": [{"product": {"id": 1, "name": "Mug"}, "quantity": 2}],
        "note": None,
    }


def test_lists_and_dicts_of_objects_serialize_their_items(client):
    assert client.get("/products").get_json() == [
        {"id": 1, "name": "Mug"},
        {"id": 2, "name": "Kettle"},
    ]
    assert client.get("/by-name").get_json() == {"mug": {"id": 1, "name": "Mug"}}


def test_a_value_status_tuple_keeps_the_status(client):
    response = client.post("/product")
    assert response.status_code == 201
    assert response.get_json() == {"id": 3, "name": "Grinder"}


def test_a_value_status_headers_tuple_keeps_status_and_headers(client):
    response = client.put("/product")
    assert response.status_code == 200
    assert response.headers["Location"] == "/product/3"
    assert response.get_json()["name"] == "Grinder"


def test_a_value_headers_tuple_keeps_the_headers(app, client):
    @app.get("/with-headers")
    def with_headers() -> object:
        return Product(1, "Mug"), {"X-Kind": "product"}

    response = client.get("/with-headers")
    assert response.headers["X-Kind"] == "product"
    assert response.get_json() == {"id": 1, "name": "Mug"}


def test_native_return_values_are_left_to_flask(app, client):
    @app.get("/text")
    def text() -> object:
        return "plain", 202

    @app.get("/stream")
    def stream() -> object:
        return iter([b"a", b"b"])

    @app.get("/response")
    def response() -> object:
        return Response("made", status=203)

    assert client.get("/text").get_data(as_text=True) == "plain"
    assert client.get("/text").status_code == 202
    assert client.get("/stream").get_data() == b"ab"
    assert client.get("/response").status_code == 203


def test_jsonify_and_the_tojson_filter_agree_with_the_view(app, client):
    cart = Cart([Line(Product(1, "Mug"), 2)], note="gift")
    with app.test_request_context():
        from_jsonify = jsonify(cart).get_json()
        from_template = render_template_string("{{ cart|tojson }}", cart=cart)
    assert json.loads(from_template) == from_jsonify
    assert from_jsonify["lines"][0]["product"] == {"id": 1, "name": "Mug"}


def test_the_tojson_filter_uses_the_provider_even_if_jinja_was_set_up_first():
    app = Flask("early_jinja")
    app.jinja_env  # noqa: B018 - created before the extension on purpose
    JSONResponses(app)
    with app.app_context():
        text = render_template_string("{{ p|tojson }}", p=Product(1, "Mug"))
    assert json.loads(text) == {"id": 1, "name": "Mug"}


def test_flask_types_keep_their_default_encoding(app):
    value = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "amount": decimal.Decimal("1.50"),
        "id": uuid.UUID(int=1),
    }
    with app.app_context():
        assert json.loads(app.json.dumps(value)) == {
            "when": "Fri, 02 Jan 2026 03:04:05 GMT",
            "amount": "1.50",
            "id": "00000000-0000-0000-0000-000000000001",
        }


def test_a_returned_object_that_is_not_serializable_is_a_type_error_naming_it(
    client,
):
    with pytest.raises(TypeError, match=r"test_responses\.Opaque") as error:
        client.get("/opaque")
    assert "'opaque'" in str(error.value)


def test_a_nested_object_that_is_not_serializable_is_a_type_error_naming_it(client):
    with pytest.raises(TypeError, match=r"test_responses\.Opaque") as error:
        client.get("/nested-opaque")
    assert "'nested_opaque'" in str(error.value)
    assert "not JSON serializable" in str(error.value)


def test_an_unserializable_object_is_a_logged_500_in_production(app, caplog):
    app.testing = False
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        response = client.get("/nested-opaque")
    assert response.status_code == 500
    assert "Opaque" not in response.get_data(as_text=True)
    logged = "\n".join(
        f"{record.getMessage()}\n{record.exc_text or ''}" for record in caplog.records
    )
    assert "Opaque" in logged
    assert "'nested_opaque'" in logged


def test_none_from_a_view_keeps_flasks_own_error(app, client):
    @app.get("/none")
    def none() -> object:
        return None

    with pytest.raises(TypeError, match="did not return a valid response"):
        client.get("/none")


def test_registering_twice_is_refused(app):
    with pytest.raises(RuntimeError, match="already registered"):
        JSONResponses(app)


def test_init_app_keeps_the_replaced_providers_settings():
    app = Flask("settings")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    JSONResponses().init_app(app)
    assert isinstance(app.json, ObjectJSONProvider)
    with app.app_context():
        assert app.json.dumps({"b": "é", "a": 1}) == '{"b": "é", "a": 1}'


def test_an_app_whose_provider_class_is_already_the_object_provider_keeps_it():
    class App(Flask):
        json_provider_class = ObjectJSONProvider

    app = App("own_provider")
    provider = app.json
    JSONResponses(app)
    assert app.json is provider


def test_is_json_object_accepts_to_json_objects_and_dataclass_instances_only():
    assert is_json_object(Product(1, "Mug"))
    assert is_json_object(Cart([]))
    assert not is_json_object(Cart)
    assert not is_json_object(Opaque())
    assert not is_json_object({"a": 1})


def test_an_attribute_named_to_json_on_the_instance_only_does_not_count():
    thing = Opaque()
    thing.to_json = dict  # type: ignore[attr-defined]
    assert not is_json_object(thing)
