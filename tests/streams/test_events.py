"""Stored events, ids and the checks of channels and event names."""

from __future__ import annotations

import pytest

from flask_patterns.streams import MAX_EVENT_ID
from flask_patterns.streams import parse_event_id
from flask_patterns.streams import StoredEvent
from flask_patterns.streams.events import check_channel
from flask_patterns.streams.events import check_event_name
from flask_patterns.streams.events import encode_data
from flask_patterns.streams.events import event_id
from flask_patterns.streams.events import new_epoch


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ab12cd-0", ("ab12cd", 0)),
        ("x-42", ("x", 42)),
        (f"e-{MAX_EVENT_ID}", ("e", MAX_EVENT_ID)),
        (f"e-{MAX_EVENT_ID + 1}", None),
        (f"e-{2**64 + 1}", None),
        ("e-" + "9" * 19, None),
        ("e-" + "1" * 20, None),
        ("e--1", None),
        ("e-+1", None),
        ("e-1.0", None),
        ("e-٣", None),
        ("E-1", None),
        ("-1", None),
        ("42", None),
        ("a" * 17 + "-1", None),
        ("e-1\n", None),
        ("", None),
        ("../../etc", None),
        (None, None),
    ],
)
def test_an_event_id_is_an_epoch_and_a_position_within_what_brokers_hand_out(
    value, expected
):
    assert parse_event_id(value) == expected


def test_a_stored_event_frames_itself_once_with_its_id_and_name():
    stored = StoredEvent("k3x-7", "orders", '{"n":1}', event="purchase")
    assert stored.frame == b'event: purchase\nid: k3x-7\ndata: {"n":1}\n\n'
    assert stored.frame is stored.frame
    assert (stored.epoch, stored.position) == ("k3x", 7)


def test_new_epochs_are_short_and_differ():
    epochs = {new_epoch() for _ in range(1000)}
    assert len(epochs) == 1000
    assert all(parse_event_id(event_id(e, 5)) == (e, 5) for e in epochs)


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
