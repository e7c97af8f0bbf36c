"""Views that read their request body as a stream, with form parsing switched
off for them alone.

The talk switched form parsing off for the whole app with a request class. Here
the request class (:class:`StreamingRequest`, installed by :class:`Bodies`) asks
the matched view: only views decorated with :func:`stream_body` get an unparsed
body, so forms and CSRF checks keep working everywhere else. In such a view
nothing parses or buffers the body behind its back: ``request.form`` and
``request.files`` are empty (even for an extension's before-request hook), and
``request.get_data()``, ``request.data`` and ``request.get_json()`` raise.

Limits answer 413 with a message that says the limit: ``MAX_CONTENT_LENGTH`` for
the app, or a view's own ``max_size``, checked against ``Content-Length`` before
the view runs and again while reading, which also bounds chunked bodies. A body
that ends before its ``Content-Length`` is a 400. :func:`save_body` streams the
body to a file in constant memory and leaves no partial file behind. See
``docs/bodies.md``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import typing as t
from dataclasses import dataclass

from flask import current_app
from flask import Flask
from flask import has_app_context
from flask import request
from flask.wrappers import Request
from werkzeug.exceptions import BadRequest
from werkzeug.exceptions import ClientDisconnected
from werkzeug.exceptions import LengthRequired
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.exceptions import UnsupportedMediaType

from ._registry import refuse_second
from ._registry import register

__all__ = [
    "CHUNK_SIZE",
    "Bodies",
    "BodyIncomplete",
    "BodyTooLarge",
    "SavedBody",
    "StreamingRequest",
    "iter_body",
    "save_body",
    "stream_body",
]

_NAME = "bodies"
_MARK = "_flask_patterns_stream_body"
#: How much of the body is read (and held in memory) at a time.
CHUNK_SIZE = 64 * 1024

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


@dataclass(frozen=True)
class _BodiesState:
    #: The request class installed: Flask's, or the app's own, made streaming.
    request_class: type[Request]


@dataclass(frozen=True)
class _BodySpec:
    max_size: int | None
    content_types: frozenset[str] | None


def _size(value: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor and value % factor == 0:
            return f"{value} bytes ({value // factor} {unit})"
    return f"{value} bytes"


class BodyTooLarge(RequestEntityTooLarge):
    """413: the body is over the limit, which the message states."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        limit_text = "" if limit is None else f" of {_size(limit)}"
        super().__init__(f"The request body is over the limit{limit_text}.")


class BodyIncomplete(BadRequest):
    """400: the body ended before the length its ``Content-Length`` announced, as
    when the client was interrupted."""

    def __init__(self, received: int, expected: int | None) -> None:
        self.received = received
        self.expected = expected
        if expected is None:
            what = f"{received} bytes, when the connection broke"
        else:
            what = f"{received} of the {expected} bytes announced in Content-Length"
        super().__init__(f"The request body ended after {what}.")


def _spec(req: Request) -> _BodySpec | None:
    """The :func:`stream_body` settings of the view this request matched."""
    if req.url_rule is None or not has_app_context():
        return None
    view = current_app.view_functions.get(req.url_rule.endpoint)
    return t.cast(_BodySpec | None, getattr(view, _MARK, None))


class StreamingRequest(Request):
    """Flask's request class, except in the views decorated with
    :func:`stream_body`: there the body is never parsed or buffered, and the
    view's ``max_size`` is the request's ``max_content_length``."""

    @property
    def want_form_data_parsed(self) -> bool:
        return _spec(self) is None and super().want_form_data_parsed

    @property
    def max_content_length(self) -> int | None:
        spec = _spec(self)
        if self._max_content_length is None and spec and spec.max_size is not None:
            return spec.max_size
        return super().max_content_length

    @max_content_length.setter
    def max_content_length(self, value: int | None) -> None:
        self._max_content_length = value

    @t.overload
    def get_data(
        self,
        cache: bool = True,
        as_text: t.Literal[False] = False,
        parse_form_data: bool = False,
    ) -> bytes: ...

    @t.overload
    def get_data(
        self,
        cache: bool = True,
        as_text: t.Literal[True] = ...,
        parse_form_data: bool = False,
    ) -> str: ...

    def get_data(
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> bytes | str:
        if _spec(self) is not None:
            raise RuntimeError(
                f"The view {self.endpoint!r} streams its body: read request.stream"
                " (or use iter_body or save_body) instead of get_data(), data or"
                " get_json(), which would hold the whole body in memory."
            )
        with _clear_limit_error(self):
            if as_text:
                return super().get_data(cache, True, parse_form_data)
            return super().get_data(cache, False, parse_form_data)

    def _load_form_data(self) -> None:
        with _clear_limit_error(self):
            super()._load_form_data()


@contextlib.contextmanager
def _clear_limit_error(req: Request) -> t.Iterator[None]:
    """Werkzeug's 413 does not say the limit; this one does."""
    try:
        yield
    except RequestEntityTooLarge as error:
        if isinstance(error, BodyTooLarge):
            raise
        raise BodyTooLarge(req.max_content_length) from None


class Bodies:
    """Install :class:`StreamingRequest` on an app, so that :func:`stream_body`
    views get their body unparsed.

    :param app: register on this app at once, or later with :meth:`init_app`.

    An app whose ``request_class`` is a subclass of Flask's keeps it: the
    streaming behaviour is mixed in front of it.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension on ``app``."""
        refuse_second(app, _NAME, what="Bodies")
        base = app.request_class
        if base is Request:
            app.request_class = StreamingRequest
        elif not issubclass(base, StreamingRequest):
            app.request_class = t.cast(
                type[Request],
                type(f"Streaming{base.__name__}", (StreamingRequest, base), {}),
            )
        register(app, _NAME, _BodiesState(app.request_class), what="Bodies")


def stream_body(
    *, max_size: int | None = None, content_types: t.Iterable[str] | None = None
) -> t.Callable[[F], F]:
    """Give the decorated view its request body unparsed, as ``request.stream``.

    :param max_size: the largest body accepted, in bytes; it replaces the app's
        ``MAX_CONTENT_LENGTH`` for this view (``None`` keeps the app's).
    :param content_types: the media types accepted (such as ``"image/png"``);
        anything else answers 415 before the body is read. ``None`` accepts all.

    Before the view runs, a ``Content-Length`` over the limit answers 413, and a
    chunked body the server cannot bound answers 411.
    """
    types = None if content_types is None else frozenset(map(str.lower, content_types))
    spec = _BodySpec(max_size, types)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            _check_request(spec)
            with _clear_limit_error(request):
                return view(*args, **kwargs)

        setattr(wrapper, _MARK, spec)
        return t.cast(F, wrapper)

    return decorator


def _check_request(spec: _BodySpec) -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(req, StreamingRequest):
        raise RuntimeError(
            "stream_body needs the Bodies extension: call Bodies(app) or"
            " bodies.init_app(app) first."
        )
    if spec.content_types is not None and req.mimetype not in spec.content_types:
        accepted = ", ".join(sorted(spec.content_types))
        raise UnsupportedMediaType(
            f"Send the body as one of: {accepted} (not {req.mimetype or 'nothing'})."
        )
    limit, length = req.max_content_length, req.content_length
    if limit is not None and length is not None and length > limit:
        raise BodyTooLarge(limit)
    chunked = "chunked" in req.headers.get("Transfer-Encoding", "").lower()
    if length is None and chunked and not req.environ.get("wsgi.input_terminated"):
        raise LengthRequired(
            "This server cannot bound a chunked body: send a Content-Length."
        )


def iter_body(chunk_size: int = CHUNK_SIZE) -> t.Iterator[bytes]:
    """Yield the rest of the request body in chunks of at most ``chunk_size``
    bytes.

    :raises BodyTooLarge: the body went over the limit.
    :raises BodyIncomplete: the body ended before its ``Content-Length``, or the
        connection broke.
    """
    expected = request.content_length
    if expected is None and request.environ.get("wsgi.input_terminated"):
        # The server ends the body itself (chunked): read its input directly and
        # count, because Werkzeug's guarded stream takes the read that finds the
        # end of a body exactly at the limit for one past it.
        yield from _to_end(request.input_stream, chunk_size)
        return
    yield from _to_length(request.stream, expected, chunk_size)


def _to_length(
    stream: t.IO[bytes], expected: int | None, chunk_size: int
) -> t.Iterator[bytes]:
    received = 0
    # Reading stops at Content-Length, for the same reason as above.
    while expected is None or received < expected:
        size = chunk_size if expected is None else min(chunk_size, expected - received)
        chunk = _read(stream, size, received, expected)
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if expected is not None and received < expected:
        raise BodyIncomplete(received, expected)


def _to_end(stream: t.IO[bytes], chunk_size: int) -> t.Iterator[bytes]:
    limit = request.max_content_length
    received = 0
    while True:
        size = chunk_size if limit is None else min(chunk_size, limit + 1 - received)
        chunk = _read(stream, size, received, None)
        if not chunk:
            return
        received += len(chunk)
        if limit is not None and received > limit:
            raise BodyTooLarge(limit)
        yield chunk


def _read(stream: t.IO[bytes], size: int, received: int, expected: int | None) -> bytes:
    try:
        return stream.read(size)
    except RequestEntityTooLarge:
        raise BodyTooLarge(request.max_content_length) from None
    except (ClientDisconnected, OSError):
        raise BodyIncomplete(received, expected) from None


@dataclass(frozen=True)
class SavedBody:
    """A request body written to ``path`` by :func:`save_body`."""

    path: str
    size: int
    sha256: str


def save_body(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = CHUNK_SIZE,
    mode: int = 0o644,
    allow_empty: bool = True,
    check_head: t.Callable[[bytes], None] | None = None,
    head_size: int = 64,
) -> SavedBody:
    """Stream the request body into the file ``path``, hashing it on the way.

    The body goes to a temporary file in the same folder, which is flushed to
    disk and then renamed over ``path`` in one step: readers see the old file or
    the whole new one, never a part. On any error (limit, short body, broken
    connection, full disk, a head refused) the temporary file is removed and
    ``path`` is left as it was.

    :param mode: the permissions of the file.
    :param allow_empty: ``False`` answers 400 to an empty body.
    :param check_head: called with the first ``head_size`` bytes (or the whole
        body, if shorter) as soon as they arrived, before the rest is read; it
        raises (an HTTP error such as 415) to refuse the body. Use it to check
        that the bytes are what the ``Content-Type`` says, for example an
        image's magic number.
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    hasher = hashlib.sha256()
    size = 0
    head = b"" if check_head is not None else None
    descriptor, temporary = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".part"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            for chunk in iter_body(chunk_size):
                if head is not None and check_head is not None:
                    head += chunk[: head_size - len(head)]
                    if len(head) >= head_size:
                        check_head(head)
                        head = None
                hasher.update(chunk)
                file.write(chunk)
                size += len(chunk)
            if size == 0 and not allow_empty:
                raise BadRequest("The request body is empty.")
            if head is not None and check_head is not None:
                check_head(head)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(folder)
    return SavedBody(path=target, size=size, sha256=hasher.hexdigest())


def _sync_folder(folder: str) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
