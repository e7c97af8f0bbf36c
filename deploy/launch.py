"""Start ``deploy/up.py`` (what ``make up`` runs) on free ports of this machine,
wait until it serves, and stop it: the one launcher the topology tests and the
topology benchmark share."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import typing as t
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UP = ROOT / "deploy" / "up.py"


@dataclass
class Launched:
    """A running ``deploy/up.py`` and the processes it started."""

    process: subprocess.Popen[bytes]
    listen: str
    web_port: int
    stream_port: int
    run_dir: Path
    #: The processes up.py started, by name (nginx, web, stream, worker).
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def listen_port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def log(self) -> Path:
        """What up.py and every process it started wrote."""
        return self.run_dir / "up.log"

    @property
    def metrics_dir(self) -> Path:
        """Where every process of the run writes its Prometheus metrics."""
        return self.run_dir / "metrics"

    def command(self, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(UP),
            "--listen",
            self.listen,
            "--web",
            f"127.0.0.1:{self.web_port}",
            "--stream",
            f"127.0.0.1:{self.stream_port}",
            "--run-dir",
            str(self.run_dir),
            *extra,
        ]


def launch(
    *,
    listen_port: int,
    web_port: int,
    stream_port: int,
    run_dir: Path,
    env: t.Mapping[str, str],
    timeout: float = 120,
) -> Launched:
    """Start up.py with ``env`` and wait until it says the shop is up.

    :raises RuntimeError: it exited or did not come up in time, with the end of
        its output.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    launched = Launched(
        process=t.cast(subprocess.Popen[bytes], None),
        listen=f"127.0.0.1:{listen_port}",
        web_port=web_port,
        stream_port=stream_port,
        run_dir=run_dir,
    )
    with launched.log.open("wb") as output:
        launched.process = subprocess.Popen(
            launched.command(),
            env={
                **env,
                "PYTHONUNBUFFERED": "1",
                # The run's own, whatever the caller's environment names.
                "PROMETHEUS_MULTIPROC_DIR": str(launched.metrics_dir),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while b"is up on" not in launched.log.read_bytes():
        if launched.process.poll() is not None or time.monotonic() > deadline:
            stop(launched)
            raise RuntimeError(
                "deploy/up.py did not start:\n" + launched.log.read_text()[-3000:]
            )
        time.sleep(0.2)
    recorded = json.loads((run_dir / "pids.json").read_text())
    launched.pids = {name: pid for name, (pid, _) in recorded.items()}
    return launched


def stop(launched: Launched, timeout: float = 90) -> list[str]:
    """SIGINT to up.py, which stops what it started (``--down`` if it does not
    exit in time); return the processes that still run."""
    if launched.process.poll() is None:
        launched.process.send_signal(signal.SIGINT)
    try:
        launched.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        launched.process.kill()
        launched.process.wait()
        subprocess.run(launched.command("--down"), check=False)
    return [
        f"{name} (pid {pid})"
        for name, pid in launched.pids.items()
        if Path(f"/proc/{pid}").exists()
    ]
