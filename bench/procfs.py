"""What the benchmarks read of processes and sockets from ``/proc``: one place
for each reader, so that every benchmark counts CPU, memory and connections the
same way."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import typing as t
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found += [int(x) for x in text.split()]
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, index = [pid], 0
    while index < len(pids):
        pids += children(pids[index])
        index += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of ``pid`` itself."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children they
    have reaped: counted once each, whatever exits in between."""
    total = 0
    for member in tree(pid):
        with contextlib.suppress(OSError, IndexError):
            total += sum(int(x) for x in proc_stat(member)[11:15])
    return total / CLOCK_TICKS


def own_cpu(pids: t.Iterable[int]) -> dict[int, float]:
    """CPU seconds of each process, by pid (those that are gone left out)."""
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            found[pid] = cpu_seconds(pid)
    return found


def busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot."""
    values = [
        int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]
    ]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS


def this_process_cpu() -> float:
    """CPU seconds of this process and the children it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def socket_inodes(pids: t.Iterable[int]) -> set[str]:
    """The inodes of the sockets the processes hold open."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def established(pid: int | None = None) -> dict[str, tuple[int, int]]:
    """Inode -> (local port, remote port) of every established TCP socket (in
    the network namespace of ``pid``, if given)."""
    where = "/proc/net" if pid is None else f"/proc/{pid}/net"
    table = {}
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"{where}/{name}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "01":
                    local = int(parts[1].rsplit(":", 1)[1], 16)
                    remote = int(parts[2].rsplit(":", 1)[1], 16)
                    table[parts[9]] = (local, remote)
    return table
