"""Product images: where they are stored, what they must look like, and how
they are served.

An upload must be what its ``Content-Type`` says, down to the magic number at
its start: HTML sent as ``image/png`` is refused, so the shop never serves a
page of someone's making from its own origin. Stored images are served with
their own type, ``nosniff`` and a sandboxing policy.
"""

from __future__ import annotations

import os

from flask import abort
from flask import Blueprint
from flask import current_app
from flask import request
from flask import Response
from flask import send_file
from flask import url_for
from werkzeug.exceptions import UnsupportedMediaType

from .models import Product

bp = Blueprint("images", __name__)

#: The image types accepted, and the suffix each is stored under.
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
_TYPE_OF_SUFFIX = {suffix: mimetype for mimetype, suffix in IMAGE_TYPES.items()}
MAX_IMAGE_SIZE = 100 * 1024 * 1024
#: Served on images: nothing in them runs, even opened as a page.
IMAGE_POLICY = "default-src 'none'; sandbox"
#: The picture, in ``static/``, of a product without an image (decorative).
PLACEHOLDER = "product-placeholder.svg"


def image_folder() -> str:
    """Where product images go: ``PRODUCT_IMAGE_FOLDER``, by default
    ``product-images`` in the instance folder."""
    folder = current_app.config.get("PRODUCT_IMAGE_FOLDER")
    return str(folder or os.path.join(current_app.instance_path, "product-images"))


def is_image_of_type(mimetype: str, head: bytes) -> bool:
    """Whether ``head``, the first bytes of a file, starts the way an image of
    ``mimetype`` does."""
    if mimetype == "image/png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    if mimetype == "image/jpeg":
        return head.startswith(b"\xff\xd8\xff")
    if mimetype == "image/webp":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return False


def check_declared_type(head: bytes) -> None:
    """For ``save_body``: refuse a body that is not the image its
    ``Content-Type`` declares."""
    if not is_image_of_type(request.mimetype, head):
        raise UnsupportedMediaType(
            f"The body is not a {request.mimetype} image: its first bytes do"
            " not match the type declared in Content-Type."
        )


def stored_image(product_id: int) -> tuple[str, str] | None:
    """The path and type of the product's image, if it has one."""
    folder = image_folder()
    for suffix, mimetype in _TYPE_OF_SUFFIX.items():
        path = os.path.join(folder, f"{product_id}{suffix}")
        if os.path.isfile(path):
            return path, mimetype
    return None


def image_url(product: Product) -> str | None:
    """The URL of the product's image, changing whenever it is replaced, or
    ``None`` without one."""
    found = stored_image(product.id)
    if found is None:
        return None
    version = os.stat(found[0]).st_mtime_ns
    return url_for("images.image", product_id=product.id, v=version)


def placeholder_url() -> str:
    """The URL of the picture shown for a product without an image of its own."""
    return url_for("static", filename=PLACEHOLDER)


def image_url_or_placeholder(product: Product) -> str:
    """The URL of the product's image, or of the placeholder without one."""
    return image_url(product) or placeholder_url()


bp.add_app_template_global(placeholder_url)
bp.add_app_template_global(image_url_or_placeholder)


@bp.get("/products/<int:product_id>/image")
def image(product_id: int) -> Response:
    """The product's image, with its own type and a policy under which nothing
    in it runs."""
    found = stored_image(product_id)
    if found is None:
        abort(404)
    path, mimetype = found
    response = send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
    response.headers["Content-Security-Policy"] = IMAGE_POLICY
    return response
