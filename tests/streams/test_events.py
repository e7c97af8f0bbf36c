"""Stored events, ids and the checks of channels and event names."""

from __future__ import annotations

import pytest

from flask_patterns.streams import MAX_EVENT_ID
from flask_patterns.streams import parse_event_id
from flask_patterns.streams import StoredEvent
from flask_patterns.streams.events import check_channel
from flask_patterns.streams.events import check_event_name
from flask_patterns.streams.events import encode_data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (str(MAX_EVENT_ID), MAX_EVENT_ID),
        (str(MAX_EVENT_ID + 1), None),
        (str(2**64 + 1), None),
        ("9" * 20, None),
        ("1" * 21, None),
        ("", None),
        ("-1", None),
        ("+1", None),
        ("1.0", None),
        ("٣", None),
        (None, None),
    ],
)
def test_an_event_id_is_a_position_only_within_what_a_broker_hands_out(value, expected):
    assert parse_event_id(value) == expected


def test_a_stored_event_frames_itself_once_with_its_id_and_name():
    stored = StoredEvent("7", "orders", '{"n":1}', event="purchase")
    assert stored.frame == b'event: purchase\nid: 7\ndata: {"n":1}\n\n'
    assert stored.frame is stored.frame
    assert stored.position == 7


@pytest.mark.parametrize(
    "channel", ["", "a b", "a\nb", "a\rb", "a*", "a?", "a[b]", "x\0"]
)
def test_channel_names_that_break_keys_patterns_or_frames_are_refused(channel):
    with pytest.raises(ValueError, match="Invalid channel"):
        check_channel(channel)


def test_ordinary_channel_names_pass():
    for channel in ("activity", "user:42", "news.today", "{tag}:x"):
        check_channel(channel)


def test_an_event_name_with_a_line_break_is_refused():
    with pytest.raises(ValueError):
        check_event_name("a\nb")
    check_event_name("purchase")
    check_event_name(None)


def test_data_is_kept_as_a_string_or_made_compact_json():
    assert encode_data("as it is") == "as it is"
    assert encode_data({"a": [1, 2]}) == '{"a":[1,2]}'
    assert encode_data(3) == "3"
