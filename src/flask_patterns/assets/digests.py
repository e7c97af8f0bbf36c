"""Content hashes of the files of a static folder, cached by mtime and size; a
stylesheet is hashed after its references were rewritten to hashed names."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
import typing as t
from dataclasses import dataclass
from urllib.parse import unquote

from werkzeug.security import safe_join

from .. import css
from .naming import content_digest
from .naming import HASH_LENGTH
from .naming import hashed_filename

__all__ = ["Digests", "Entry"]

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


# Read in pieces rather than whole: a bundle can be large. (hashlib.file_digest
# does this from Python 3.11 on.)
_CHUNK = 1 << 16


def _md5() -> t.Any:
    return hashlib.md5(usedforsecurity=False)


@dataclass(frozen=True)
class Entry:
    """The hash of one static file, valid while its mtime and size are ``stamp``
    (and, for a stylesheet, while its references resolve to ``refs``)."""

    stamp: tuple[int, int]
    digest: str
    #: A stylesheet's content with its references rewritten; None for others.
    content: bytes | None = None
    refs: tuple[tuple[str, str | None], ...] = ()


class Digests:
    """Content hashes of the files of one static folder, cached by mtime and
    size."""

    def __init__(self, folder: str, url_path: str) -> None:
        self.folder = folder
        self.url_prefix = url_path.rstrip("/") + "/"
        self._cache: dict[str, Entry] = {}

    def get(self, name: str, visiting: frozenset[str] = frozenset()) -> Entry | None:
        """The current entry of ``name``, or ``None`` if it is not a file of the
        folder."""
        path = safe_join(self.folder, name)
        if path is None:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        stamp = (info.st_mtime_ns, info.st_size)
        cached = self._cache.get(name)
        if name.lower().endswith(".css"):
            return self._stylesheet(name, path, stamp, cached, visiting | {name})
        if cached is not None and cached.stamp == stamp:
            return cached
        hasher = _md5()
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.hexdigest()[:HASH_LENGTH]
        self._cache[name] = entry = Entry(stamp, digest)
        return entry

    def _stylesheet(
        self,
        name: str,
        path: str,
        stamp: tuple[int, int],
        cached: Entry | None,
        visiting: frozenset[str],
    ) -> Entry:
        def resolve(url: str) -> str | None:
            return self._reference(name, url, visiting)

        if cached is not None and self._still_valid(cached, stamp, resolve):
            return cached
        with open(path, "rb") as file:
            text = file.read().decode("utf-8", "surrogateescape")
        refs = [(url, resolve(url)) for url in css.find_urls(text)]
        new = dict(refs)
        rewritten = css.rewrite_urls(text, new.__getitem__)
        content = rewritten.encode("utf-8", "surrogateescape")
        entry = Entry(stamp, content_digest(content), content, tuple(refs))
        self._cache[name] = entry
        return entry

    @staticmethod
    def _still_valid(
        cached: Entry,
        stamp: tuple[int, int],
        resolve: t.Callable[[str], str | None],
    ) -> bool:
        """A stylesheet's entry stays while neither the file nor the hashed names
        of what it refers to changed."""
        if cached.stamp != stamp:
            return False
        return all(resolve(url) == new for url, new in cached.refs)

    def _reference(self, name: str, url: str, visiting: frozenset[str]) -> str | None:
        """The hashed form of ``url`` as written in the stylesheet ``name``, or
        ``None`` to leave it: external, data, fragment-only, missing, or part of
        a cycle of imports."""
        cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=None)
        path, suffix = (url, "") if cut is None else (url[:cut], url[cut:])
        if not path or _SCHEME.match(path) or path.startswith("//"):
            return None
        if path.startswith("/"):
            if not path.startswith(self.url_prefix):
                return None
            target = unquote(path[len(self.url_prefix) :])
        else:
            target = posixpath.normpath(
                posixpath.join(posixpath.dirname(name), unquote(path))
            )
        if target in visiting:
            return None
        entry = self.get(target, visiting)
        if entry is None:
            return None
        return hashed_filename(path, entry.digest) + suffix
