"""Cache busting: ``url_for('static', filename='style.css')`` gives
``/static/style.3f2a9c1b7e4d.css``, a name that carries a hash of the file's
content, so a browser, proxy or CDN may keep it forever.

The hash is the first 12 hex digits of the MD5 of the content (as Django's
``ManifestStaticFilesStorage`` names files). A stylesheet is hashed after its
``url()`` and ``@import`` references to other static files were rewritten to their
hashed names, so a changed image changes the stylesheet's URL too.

Two modes, one naming:

- **computed** (no manifest, or debug): hashes are computed on first use and kept
  until the file's mtime or size changes, so an edited file gets a new URL at once;
- **manifest** (``flask assets build`` was run, not debug): the build wrote the
  hashed copies, their gzip and brotli siblings and a JSON manifest into
  ``PATTERNS_ASSETS_ROOT``, from where nginx can serve the same URLs.

Hashed URLs are served with ``Cache-Control: public, max-age=31536000,
immutable``; plain URLs keep Flask's revalidation (``no-cache`` with ETag and
``304``). A hashed name that does not belong to a current file answers 404, never
another content. See ``docs/assets.md``; the package has naming (pure), digests, serving
and building.
"""

from __future__ import annotations

from .building import assets_cli
from .building import build_assets
from .building import BuildReport
from .naming import HASH_LENGTH
from .naming import hashed_filename
from .naming import split_hashed_filename
from .serving import Assets
from .serving import MANIFEST_VERSION
from .serving import serve_static

__all__ = [
    "HASH_LENGTH",
    "MANIFEST_VERSION",
    "Assets",
    "BuildReport",
    "assets_cli",
    "build_assets",
    "hashed_filename",
    "serve_static",
    "split_hashed_filename",
]
