"""The frames that bring a reconnecting client up to date, and the retry hints
that spread reconnections out. No I/O, no Flask; a reset is told to the
observers (:mod:`flask_patterns.observe`)."""

from __future__ import annotations

import json
import random

from .. import observe
from ..sse import ServerSentEvent
from .events import event_id
from .events import Replay

__all__ = [
    "catch_up_frames",
    "spread_retry",
]


def catch_up_frames(
    replay: Replay, seen: tuple[str, int] | None
) -> tuple[list[bytes], int]:
    """The frames a client that saw everything up to ``seen`` (an epoch and a
    position; ``None``: an id that is not ours) is missing, and the position of
    the last one.

    A client whose id is unknown, from another history (the broker lost the one
    it knew: a Redis restart without persistence, a flush), past the newest
    position, or whose events are no longer retained, gets one ``reset`` event,
    at the newest position, to start over from.
    """
    reason = _reset_reason(replay, seen)
    if reason is not None or seen is None:
        observe.stream_reset(reason or "unknown id")
        reset = ServerSentEvent(
            json.dumps({"reason": reason}),
            event="reset",
            id=event_id(replay.epoch, replay.newest_position),
        )
        return [reset.encode()], replay.newest_position
    frames = [stored.frame for stored in replay.events]
    last = replay.events[-1].position if replay.events else seen[1]
    return frames, last


def _reset_reason(replay: Replay, seen: tuple[str, int] | None) -> str | None:
    if seen is None:
        return "unknown id"
    epoch, position = seen
    if epoch != replay.epoch or position > replay.newest_position:
        return "history lost"
    if replay.reset:
        return "history expired"
    return None


def spread_retry(retry_ms: int) -> bytes:
    """A ``retry:`` hint between one and four times ``retry_ms``, so that
    clients told to reconnect at once come back spread out."""
    delay = retry_ms * (1 + 3 * random.random())  # noqa: S311 - jitter
    return ServerSentEvent(None, retry=int(delay)).encode()
