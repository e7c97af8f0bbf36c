"""The live activity feed: a page and the event stream it listens to."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from flask import Blueprint
from flask import current_app
from flask import make_response
from flask import render_template
from flask import request
from flask import Response
from flask_login import current_user

from flask_patterns.streams import BrokerUnavailable
from flask_patterns.streams import History
from flask_patterns.streams import StoredEvent

from .extensions import streams
from .links import public_origin

bp = Blueprint("live", __name__)

#: The public channel every open activity page listens to.
ACTIVITY = "activity"

#: How many past events the activity page shows when it opens.
SHOWN = 20


def timestamp() -> str:
    """Now, as the ``at`` of an event: ISO 8601 in UTC, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def readable_time(moment: dt.datetime) -> str:
    """``7 Dec, 14:03``: the format the page shows times in (``activity.js``
    writes the live ones the same way, in the reader's time zone)."""
    return f"{moment.day} {moment:%b, %H:%M}"  # %b: English in the C locale


@dataclass(frozen=True)
class FeedItem:
    """One line of the feed, as the page shows it."""

    id: str
    text: str
    #: When it happened, ISO 8601 (for ``<time datetime>``), and readable.
    at: str | None = None
    when: str | None = None


def feed_item(event: StoredEvent) -> FeedItem:
    """The line of the feed an event stands for, described as ``activity.js``
    describes it: its ``text``, or the value itself."""
    try:
        value = json.loads(event.data)
    except ValueError:
        value = event.data
    if isinstance(value, dict) and value.get("text"):
        text = str(value["text"])
    else:
        text = value if isinstance(value, str) else event.data
    moment = _moment(value.get("at") if isinstance(value, dict) else None)
    if moment is None:
        return FeedItem(event.id, text)
    return FeedItem(event.id, text, moment.isoformat(), readable_time(moment))


def _moment(value: object) -> dt.datetime | None:
    """An ``at`` value as an aware time in UTC, or ``None`` if it is none."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)


def recent_activity() -> History | None:
    """The newest public events, or ``None`` while the broker is away."""
    try:
        return streams.recent(ACTIVITY, limit=SHOWN)
    except BrokerUnavailable:
        return None


def user_channel(user_id: int) -> str:
    """The private channel of one user's notifications."""
    return f"user:{user_id}"


def stream_client() -> str:
    """Who holds a stream, for the cap on open streams: the logged-in user, or
    the address of a visitor."""
    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return f"address:{request.remote_addr}"


@bp.get("/activity")
def activity() -> Response:
    """The feed page, with the newest public events already in it (newest
    first) and the id its stream resumes from, so that nothing published
    meanwhile is lost or shown twice. Only the public channel is read here: a
    user's own events arrive live, on their stream. A logged-in user also gets
    a token for their own channel, in a cookie only the stream endpoints see."""
    history = recent_activity()
    response = make_response(
        render_template(
            "live/activity.html",
            items=[feed_item(e) for e in reversed(history.events)] if history else [],
            last_event_id=history.last_event_id if history else None,
        )
    )
    if current_user.is_authenticated:
        response.set_cookie(
            current_app.config["PATTERNS_STREAMS_TOKEN_COOKIE"],
            streams.channel_token(user_channel(current_user.id)),
            max_age=current_app.config["PATTERNS_STREAMS_TOKEN_MAX_AGE"],
            path="/streams/",
            secure=public_origin().is_https,
            httponly=True,
            samesite="Strict",
        )
    return response


@bp.get("/streams/activity")
def activity_stream() -> Response:
    """Server-sent events of the ``activity`` channel, one JSON value per event;
    a reconnecting client replays what it missed (``Last-Event-ID``)."""
    return streams.response(ACTIVITY)


@bp.get("/streams/live")
def live_stream() -> Response:
    """The public feed plus the logged-in user's own channel, on one connection.
    The channel needs both the stream token and a live login session of the
    same user: a token left over from before a logout grants nothing."""
    mine = user_channel(current_user.id) if current_user.is_authenticated else None
    private = [mine] if mine in streams.granted_channels() else []
    return streams.response(ACTIVITY, *private)
