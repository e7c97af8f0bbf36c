"""Views return model objects; the app turns them into JSON.

A view may return any object with a ``to_json()`` method, a dataclass instance, or
a list or dict holding them, alone or in a ``(value, status)`` or ``(value,
status, headers)`` tuple. Nested values go through the app's JSON provider, so
``jsonify``, view return values and the templates' ``|tojson`` filter give the
same JSON for the same object. An object the provider cannot serialize raises a
:class:`TypeError` naming its type and the view, never a silent ``repr``. See
``docs/responses.md``.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import functools
import typing as t

from flask import Flask
from flask import has_request_context
from flask import request
from flask import Response
from flask.json.provider import DefaultJSONProvider
from werkzeug.wrappers import Response as BaseResponse

from ._registry import refuse_second
from ._registry import register

__all__ = ["JSONResponses", "ObjectJSONProvider", "is_json_object"]

_NAME = "responses"
#: Settings of the provider being replaced that the new one keeps.
_PROVIDER_SETTINGS = ("ensure_ascii", "sort_keys", "compact", "mimetype")
#: What Flask's ``make_response`` converts by itself (besides callables).
_NATIVE = (str, bytes, bytearray, dict, list, cabc.Iterator, BaseResponse)


def is_json_object(value: object) -> bool:
    """Tell whether ``value`` serializes through its own ``to_json()`` method or
    as a dataclass instance."""
    if callable(getattr(type(value), "to_json", None)):
        return True
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _view() -> str:
    """The current view, for error messages."""
    endpoint = request.endpoint if has_request_context() else None
    return f"the view {endpoint!r}" if endpoint else "a view"


def _type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _object_default(value: t.Any) -> t.Any:
    """Turn one value the encoder does not know into one it does."""
    if callable(getattr(type(value), "to_json", None)):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # One level at a time, unlike dataclasses.asdict(), which deep-copies
        # every field: nested objects come back through this function.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    try:
        return DefaultJSONProvider.default(value)
    except TypeError:
        pass
    raise TypeError(
        f"Object of type {_type_name(value)} is not JSON serializable"
        f" (in the response of {_view()}):"
        " give it a to_json() method, make it a dataclass, or convert it first."
    )


class ObjectJSONProvider(DefaultJSONProvider):
    """Flask's default JSON provider that also serializes objects with a
    ``to_json()`` method (called, its result serialized in turn) and dataclass
    instances (field by field), at any depth.

    Dates, ``Decimal``, ``UUID`` and ``__html__`` objects keep Flask's handling.
    """

    default: t.Callable[[t.Any], t.Any] = staticmethod(_object_default)


@dataclasses.dataclass(frozen=True)
class _ResponsesState:
    provider: ObjectJSONProvider


class JSONResponses:
    """Let the views of an app return objects with ``to_json()`` and dataclasses.

    :param app: register on this app at once, or later with :meth:`init_app`.

    Registering installs an :class:`ObjectJSONProvider` as ``app.json`` (keeping
    the settings of the provider it replaces) and wraps ``app.make_response``, the
    hook Flask calls to turn every view's return value into a response.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``."""
        refuse_second(app, _NAME, what="JSONResponses")
        provider = _install_provider(app)
        app.make_response = functools.partial(  # type: ignore[method-assign]
            _make_response, app.make_response, app
        )
        register(app, _NAME, _ResponsesState(provider=provider), what="JSONResponses")


def _install_provider(app: Flask) -> ObjectJSONProvider:
    old = app.json
    if isinstance(old, ObjectJSONProvider):
        return old
    provider = ObjectJSONProvider(app)
    for name in _PROVIDER_SETTINGS:
        if name in vars(old):
            setattr(provider, name, vars(old)[name])
    app.json = provider
    if "jinja_env" in vars(app):  # created already: |tojson kept the old one
        app.jinja_env.policies["json.dumps_function"] = provider.dumps
    return provider


def _make_response(
    make_response: t.Callable[[t.Any], Response], app: Flask, rv: t.Any
) -> Response:
    if isinstance(rv, tuple) and len(rv) in (2, 3):
        body, rest = rv[0], rv[1:]
        return make_response((_body(app, body), *rest))
    return make_response(_body(app, rv))


def _body(app: Flask, value: t.Any) -> t.Any:
    """``value`` as something Flask's ``make_response`` accepts."""
    if is_json_object(value):
        return app.json.response(value)
    if value is None or isinstance(value, _NATIVE) or callable(value):
        return value  # Flask's own handling, and its own error for None
    view = _view()
    raise TypeError(
        f"{view[0].upper()}{view[1:]} returned a {_type_name(value)}, which is not a"
        " response: give it a to_json() method, make it a dataclass, or return"
        " a str, dict, list, tuple or Response."
    )
