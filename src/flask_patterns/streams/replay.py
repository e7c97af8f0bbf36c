"""The frames that bring a reconnecting client up to date, and the retry hints
that spread reconnections out. Pure: no I/O, no Flask."""

from __future__ import annotations

import json
import random

from ..sse import ServerSentEvent
from .events import Replay

__all__ = [
    "catch_up_frames",
    "spread_retry",
]


def catch_up_frames(replay: Replay, position: int | None) -> tuple[list[bytes], int]:
    """The frames a client that saw everything up to ``position`` (``None``:
    an id that is not ours) is missing, and the position of the last one.

    A client whose events are no longer retained, whose id is unknown, or whose
    id is past the newest position (a broker that lost its history: a Redis
    restart without persistence) gets one ``reset`` event, at the newest
    position, to start over from.
    """
    if position is None or replay.reset or position > replay.newest_position:
        reason = "unknown id" if position is None else "history expired"
        reset = ServerSentEvent(
            json.dumps({"reason": reason}),
            event="reset",
            id=str(replay.newest_position),
        )
        return [reset.encode()], replay.newest_position
    frames = [stored.frame for stored in replay.events]
    last = replay.events[-1].position if replay.events else position
    return frames, last


def spread_retry(retry_ms: int) -> bytes:
    """A ``retry:`` hint between one and four times ``retry_ms``, so that
    clients told to reconnect at once come back spread out."""
    delay = retry_ms * (1 + 3 * random.random())  # noqa: S311 - jitter
    return ServerSentEvent(None, retry=int(delay)).encode()
