"""The frames that bring a reconnecting client up to date."""

from __future__ import annotations

import json

from flask_patterns.streams import Replay
from flask_patterns.streams import StoredEvent
from flask_patterns.streams.replay import catch_up_frames
from flask_patterns.streams.replay import spread_retry


def events(*positions):
    return [StoredEvent(f"e1-{i}", "a", f"d{i}") for i in positions]


def replay(positions, reset, newest):
    return Replay(events(*positions), reset, newest, "e1")


def test_a_client_gets_the_retained_events_after_its_position():
    frames, last = catch_up_frames(replay([3, 5], False, 5), ("e1", 2))
    assert frames == [e.frame for e in events(3, 5)]
    assert last == 5


def test_a_client_that_missed_nothing_stays_at_its_position():
    assert catch_up_frames(replay([], False, 9), ("e1", 9)) == ([], 9)


def reset_of(frames):
    (frame,) = frames
    lines = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
    return lines["event"], json.loads(lines["data"])["reason"], lines["id"]


def test_an_unknown_id_gets_a_reset_at_the_newest_position():
    frames, last = catch_up_frames(replay([4], False, 4), None)
    assert reset_of(frames) == ("reset", "unknown id", "e1-4")
    assert last == 4


def test_events_no_longer_retained_get_a_reset():
    frames, last = catch_up_frames(replay([8, 9], True, 9), ("e1", 1))
    assert reset_of(frames) == ("reset", "history expired", "e1-9")
    assert last == 9


def test_a_position_past_the_newest_one_gets_a_reset():
    # The broker went back in time without knowing it (an old snapshot).
    frames, last = catch_up_frames(replay([], False, 3), ("e1", 500))
    assert reset_of(frames) == ("reset", "history lost", "e1-3")
    assert last == 3


def test_an_id_from_another_history_gets_a_reset_not_a_replay():
    # The position exists in the new history, but names another event there.
    frames, last = catch_up_frames(replay([3, 5], False, 5), ("old", 2))
    assert reset_of(frames) == ("reset", "history lost", "e1-5")
    assert last == 5


def test_retry_hints_spread_between_one_and_four_times_the_delay():
    delays = {int(spread_retry(1000).split()[1]) for _ in range(200)}
    assert min(delays) >= 1000
    assert max(delays) <= 4000
    assert max(delays) - min(delays) > 1000, "spread out, not all alike"
