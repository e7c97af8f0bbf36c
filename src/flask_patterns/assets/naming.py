"""Hashed file names: ``css/site.css`` with a digest becomes
``css/site.3f2a9c1b7e4d.css``. Pure: no I/O."""

from __future__ import annotations

import hashlib
import posixpath
import re

__all__ = [
    "HASH_LENGTH",
    "content_digest",
    "hashed_filename",
    "split_hashed_filename",
]

#: Hex digits of the MD5 of a file's content kept in its hashed name.
HASH_LENGTH = 12
_HASHED = re.compile(r"^(?P<stem>.+)\.(?P<digest>[0-9a-f]{12})(?P<ext>\.[^.]*)?$")


def hashed_filename(name: str, digest: str) -> str:
    """``css/site.css`` with digest ``3f2a…`` gives ``css/site.3f2a….css``: the
    digest goes before the last suffix."""
    head, base = posixpath.split(name)
    stem, ext = posixpath.splitext(base)
    return posixpath.join(head, f"{stem}.{digest}{ext}")


def split_hashed_filename(name: str) -> tuple[str, str] | None:
    """The file name and digest a hashed name was made from, or ``None`` when
    ``name`` does not look hashed."""
    head, base = posixpath.split(name)
    match = _HASHED.match(base)
    if match is None:
        return None
    source = posixpath.join(head, match["stem"] + (match["ext"] or ""))
    return source, match["digest"]


def content_digest(data: bytes) -> str:
    """The digest that goes into the hashed name of a file holding ``data``."""
    return str(hashlib.md5(data, usedforsecurity=False).hexdigest()[:HASH_LENGTH])
