"""The development mailbox: every mail the shop delivered to it, with clickable
links, newest first.

It shows live activation and password-reset links, so it is off unless the app
runs in debug (``make run``) or ``STOREFRONT_DEV_MAILBOX=true`` is set: a
deployment that forgot its SMTP settings keeps its mail queued instead of
publishing it.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import abort
from flask import Blueprint
from flask import current_app
from flask import Flask
from flask import render_template
from flask import request
from markupsafe import escape
from markupsafe import Markup

from .extensions import db
from .models import SentMail

bp = Blueprint("mailbox", __name__, url_prefix="/dev")

PER_PAGE = 20
#: A URL in the text of a mail; punctuation that ends the sentence it closes
#: ("at http://.../orders.") is not part of it.
_LINK = re.compile(r"https?://[^\s<>\"']+(?<![.,;:!?)])")


def mailbox_enabled(app: Flask | None = None) -> bool:
    """Whether the development mailbox is on: in debug, or when
    ``STOREFRONT_DEV_MAILBOX`` is set to true."""
    app = app or current_app
    return bool(app.debug or app.config["DEV_MAILBOX"])


@bp.before_request
def only_in_development() -> None:
    if not mailbox_enabled():
        abort(404)


@bp.app_template_filter("linkify")
def linkify(text: str) -> Markup:
    """Escape ``text`` and turn the http(s) URLs in it into links."""
    parts: list[Markup] = []
    last = 0
    for match in _LINK.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(Markup('<a href="{0}">{0}</a>').format(match[0]))
        last = match.end()
    parts.append(escape(text[last:]))
    return Markup("").join(parts)


@bp.get("/mailbox")
def index() -> str:
    """One page of the delivered mail, newest first (``?page=2`` for older)."""
    total = db.session.scalar(sa.select(sa.func.count()).select_from(SentMail)) or 0
    pages = max(1, -(-total // PER_PAGE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)
    mails = db.session.scalars(
        sa.select(SentMail)
        .order_by(SentMail.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    return render_template(
        "mailbox.html", mails=mails, page=page, pages=pages, total=total
    )
