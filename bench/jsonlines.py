"""Child processes of a benchmark that answer in JSON lines."""

from __future__ import annotations

import json
import select
import subprocess
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class JsonLines:
    """A child process that answers one JSON line at a time and stops when it
    reads ``stop``."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self, timeout: float) -> dict[str, t.Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"the {self.name} did not answer in time")
        return t.cast(dict[str, t.Any], json.loads(line))

    def stop(self, timeout: float) -> dict[str, t.Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
