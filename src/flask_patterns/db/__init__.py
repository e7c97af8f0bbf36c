"""One pooled database session per task, committed or rolled back at the task's end,
with callbacks that run only after a commit.

The request boundary commits *before* the response leaves the application, so a
failed commit reaches the app's error handlers and the client sees a 500 instead
of a false success. See ``docs/unit-of-work.md`` for the full table of outcomes,
and ``docs/architecture.md`` for how the modules of this package fit together.
"""

from __future__ import annotations

from .callbacks import capture_on_commit_callbacks
from .extension import Database
from .extension import default_commit_veto
from .retrying import is_transient_error
from .tasks import after_commit
from .unit import Boundary
from .unit import committed
from .unit import rolled_back
from .unit import TaskSession

__all__ = [
    "Boundary",
    "Database",
    "TaskSession",
    "after_commit",
    "capture_on_commit_callbacks",
    "committed",
    "default_commit_veto",
    "is_transient_error",
    "rolled_back",
]
