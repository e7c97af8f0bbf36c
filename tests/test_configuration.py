"""The configuration reference lists every setting the library reads, and no
other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"\bPATTERNS_[A-Z_]*[A-Z]\b")


def read_by_the_library():
    return {
        key
        for path in (ROOT / "src/flask_patterns").rglob("*.py")
        for key in KEY.findall(path.read_text())
    }


def documented():
    return set(KEY.findall((ROOT / "docs/configuration.md").read_text()))


def test_every_setting_the_library_reads_is_in_the_reference():
    read = read_by_the_library()
    assert "PATTERNS_DATABASE_URL" in read
    assert read - documented() == set()


def test_the_reference_lists_no_setting_the_library_does_not_read():
    assert documented() - read_by_the_library() == set()
