"""Hashed file names."""

from __future__ import annotations

import pytest

from flask_patterns.assets import hashed_filename
from flask_patterns.assets import split_hashed_filename


@pytest.mark.parametrize(
    ("name", "hashed"),
    [
        ("style.css", "style.0123456789ab.css"),
        ("js/jquery.min.js", "js/jquery.min.0123456789ab.js"),
        ("LICENSE", "LICENSE.0123456789ab"),
        ("a/b.tar.gz", "a/b.tar.0123456789ab.gz"),
    ],
)
def test_hashed_names_split_back_into_name_and_digest(name, hashed):
    assert hashed_filename(name, "0123456789ab") == hashed
    assert split_hashed_filename(hashed) == (name, "0123456789ab")


def test_names_without_a_digest_do_not_split():
    assert split_hashed_filename("style.css") is None
    assert split_hashed_filename("style.0123456789AB.css") is None
    assert split_hashed_filename("style.0123456789a.css") is None
