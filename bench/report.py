"""What every benchmark shares: the description of the machine, the time of the
run, a free port, its report options, and rewriting its own section of
BENCHMARKS.md while keeping the others."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"

INTRO = """\
# Benchmarks

The figures below come from `make bench`. Each benchmark measures the variants it
compares side by side in one run, on the machine described with it, so the ratios
between them are what counts; absolute figures move with the machine and its
load. They are never asserted in tests.
"""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or "unknown"


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpus} CPUs (nproc), {cpu_model()}, load average {load} at start"


def run_time() -> str:
    """Now, as a report's ``Date:`` line gives it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_section(path: Path, text: str, start_mark: str, end_mark: str) -> None:
    """Replace the section of ``path`` between the two marks with ``text`` (which
    carries the marks), keeping every other section; append it if absent."""
    old = path.read_text() if path.exists() else INTRO
    if start_mark in old and end_mark in old:
        head, rest = old.split(start_mark, 1)
        tail = rest.split(end_mark, 1)[1].lstrip("\n")
        new = head + text + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


@dataclass(frozen=True)
class Section:
    """One benchmark's section of the report, between its two marks."""

    name: str

    @property
    def start(self) -> str:
        return f"<!-- {self.name}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.name}:end -->"

    def write(self, path: Path, text: str) -> None:
        """Replace this section of ``path``, keeping the others."""
        write_section(path, text, self.start, self.end)


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """``--report PATH`` (BENCHMARKS.md) and ``--no-report`` (print only)."""
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--no-report", action="store_true", help="print only")


def report_path(args: argparse.Namespace) -> Path | None:
    """Where the run's section goes, or ``None`` to print only."""
    return None if args.no_report else Path(args.report)


def echoed_arguments(argv: list[str] | None) -> str:
    """The command's arguments as the report quotes them (``--no-report`` left
    out), each led by a space."""
    given = sys.argv[1:] if argv is None else argv
    return "".join(f" {arg}" for arg in given if arg != "--no-report")
