"""The live activity feed: a page and the event stream it listens to."""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import g
from flask import make_response
from flask import render_template
from flask import request
from flask import Response

from .extensions import streams
from .links import public_origin

bp = Blueprint("live", __name__)

#: The public channel every open activity page listens to.
ACTIVITY = "activity"


def user_channel(user_id: int) -> str:
    """The private channel of one user's notifications."""
    return f"user:{user_id}"


def stream_client() -> str:
    """Who holds a stream, for the cap on open streams: the logged-in user, or
    the address of a visitor."""
    if g.get("user") is not None:
        return f"user:{g.user.id}"
    return f"address:{request.remote_addr}"


@bp.get("/activity")
def activity() -> Response:
    """The feed page. A logged-in user also gets a token for their own channel,
    in a cookie only the stream endpoints see."""
    response = make_response(render_template("live/activity.html"))
    if g.user is not None:
        response.set_cookie(
            current_app.config["PATTERNS_STREAMS_TOKEN_COOKIE"],
            streams.channel_token(user_channel(g.user.id)),
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
    mine = user_channel(g.user.id) if g.user is not None else None
    private = [mine] if mine in streams.granted_channels() else []
    return streams.response(ACTIVITY, *private)
