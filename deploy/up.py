"""Run the whole storefront topology on this machine: nginx in front, the gunicorn
web pool, the gunicorn gevent stream pool and the outbox worker, on PostgreSQL
and Redis. ``make up`` runs it; Ctrl-C stops every process it started;
``make down`` stops what a killed run left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import typing as t
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
EX_UNAVAILABLE = 69
NGINX_VARIABLES = (
    "LISTEN",
    "SERVER_NAME",
    "STREAMS_PER_ADDRESS",
    "WEB_UPSTREAM",
    "STREAM_UPSTREAM",
    "STATIC_ROOT",
    "RUN_DIR",
    "NGINX_WORKER_CONNECTIONS",
    "NGINX_RLIMIT_NOFILE",
    "NGINX_USER_DIRECTIVE",
    "ACCESS_LOG",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default=os.environ.get("LISTEN", "127.0.0.1:8080"))
    parser.add_argument("--web", default=os.environ.get("WEB_BIND", "127.0.0.1:8001"))
    parser.add_argument(
        "--stream", default=os.environ.get("STREAM_BIND", "127.0.0.1:8002")
    )
    parser.add_argument("--run-dir", default=os.environ.get("RUN_DIR", ROOT / ".run"))
    parser.add_argument("--down", action="store_true", help="stop a previous run")
    return parser.parse_args(argv)


def fail(message: str) -> t.NoReturn:
    print(f"make up: {message}", file=sys.stderr)
    sys.exit(EX_UNAVAILABLE)


def settings(run_dir: Path, listen: str) -> dict[str, str]:
    """The environment of every process, with defaults for a local run."""
    env = dict(os.environ)
    # Links in mail point here, and nginx answers only for its host.
    env.setdefault("STOREFRONT_PUBLIC_URL", f"http://{listen}")
    env.setdefault("STOREFRONT_DATABASE_URL", "postgresql://127.0.0.1/storefront")
    env.setdefault("STOREFRONT_REDIS_URL", "redis://127.0.0.1:6379/0")
    env.setdefault("STOREFRONT_PROXY_HOPS", "1")
    # One JSON object per log line, with its request id, from every process.
    env.setdefault("STOREFRONT_LOG_FORMAT", "json")
    # `flask assets build` writes here, and nginx serves /static/ from here.
    env.setdefault("STOREFRONT_PATTERNS_ASSETS_ROOT", str(run_dir / "static"))
    # One control socket per gunicorn master (gunicorn >= 25).
    env.setdefault("WEB_CONTROL_SOCKET", str(run_dir / "web.ctl"))
    env.setdefault("STREAM_CONTROL_SOCKET", str(run_dir / "stream.ctl"))
    # Where every process writes its metrics, so that /metrics of any web
    # worker shows them all (emptied by fresh_metrics before they start).
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(run_dir / "metrics"))
    if "STOREFRONT_SECRET_KEY" not in env:
        key_file = run_dir / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        env["STOREFRONT_SECRET_KEY"] = key_file.read_text().strip()
    return env


def check_postgres(url: str) -> None:
    """Connect, creating the database if the server has none of that name."""
    import psycopg
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
        return
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            fail(
                f"PostgreSQL does not answer at {parsed.host or 'localhost'}:"
                f"{parsed.port or 5432} ({str(error).strip()}).\n"
                "Install and start it: apt-get install -y postgresql &&"
                " pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main"
                " start, or set STOREFRONT_DATABASE_URL."
            )
    admin = parsed.set(drivername="postgresql", database="postgres")
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True
    ) as connection:
        connection.execute(f'CREATE DATABASE "{parsed.database}"')
    print(f"Created the database {parsed.database}.")


def check_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as error:
        fail(
            f"Redis does not answer at {url} ({error}).\n"
            "Install and start it: apt-get install -y redis-server &&"
            ' redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ""'
            ", or set STOREFRONT_REDIS_URL."
        )
    finally:
        client.close()


def public_origin(env: dict[str, str]) -> t.Any:
    """The parsed ``STOREFRONT_PUBLIC_URL``, or a clear exit."""
    from storefront.links import parse_public_url

    try:
        return parse_public_url(env["STOREFRONT_PUBLIC_URL"])
    except ValueError as error:
        fail(str(error))


def server_names(origin: t.Any) -> str:
    """nginx's ``server_name`` for the hosts the app trusts."""
    return " ".join(f"[{h}]" if ":" in h else h for h in origin.trusted_hosts())


def nginx_user_directive() -> str:
    """``user <name>;`` for the user running this when that is root (nginx's
    workers would otherwise drop to "nobody"); nothing otherwise, where nginx
    would only warn that it cannot switch users."""
    if os.geteuid() != 0:
        return ""
    import pwd

    return f"user {pwd.getpwuid(os.geteuid()).pw_name};"


def streams_per_address() -> str:
    """``NGINX_STREAMS_PER_ADDRESS`` (20), checked: nginx takes 1 to 65535."""
    value = os.environ.get("NGINX_STREAMS_PER_ADDRESS", "20")
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        fail(f"NGINX_STREAMS_PER_ADDRESS={value!r} must be a number from 1 to 65535.")
    return value


def render_nginx(
    run_dir: Path, args: argparse.Namespace, env: dict[str, str], origin: t.Any
) -> Path:
    values = {
        "LISTEN": args.listen,
        "SERVER_NAME": server_names(origin),
        "STREAMS_PER_ADDRESS": streams_per_address(),
        "WEB_UPSTREAM": args.web,
        "STREAM_UPSTREAM": args.stream,
        "STATIC_ROOT": env["STOREFRONT_PATTERNS_ASSETS_ROOT"],
        "RUN_DIR": str(run_dir),
        "NGINX_WORKER_CONNECTIONS": os.environ.get("NGINX_WORKER_CONNECTIONS", "16384"),
        "NGINX_RLIMIT_NOFILE": os.environ.get("NGINX_RLIMIT_NOFILE", "20000"),
        "NGINX_USER_DIRECTIVE": nginx_user_directive(),
        "ACCESS_LOG": str(run_dir / "nginx-access.log"),
    }
    for name in ("nginx.conf", "storefront.conf"):
        text = (DEPLOY / "nginx" / f"{name}.template").read_text()
        for variable in NGINX_VARIABLES:
            text = text.replace("${" + variable + "}", values[variable])
        (run_dir / name).write_text(text)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (run_dir / temp).mkdir(exist_ok=True)
    return run_dir / "nginx.conf"


def fresh_metrics(directory: Path) -> None:
    """Create the metrics folder, or empty it of what an earlier run's
    processes (and this run's set-up commands) wrote there: the counters
    start at 0 and no open stream of a dead worker is counted."""
    directory.mkdir(parents=True, exist_ok=True)
    for written in directory.glob("*.db"):
        written.unlink()


def flask(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(BIN / "flask"), "--app", "storefront", *args], env=env, check=True
    )


def commands(run_dir: Path, nginx_conf: Path) -> dict[str, list[str]]:
    nginx = shutil.which("nginx")
    if nginx is None:
        fail("nginx is not installed: apt-get install -y nginx")
    gunicorn = str(BIN / "gunicorn")
    return {
        "nginx": [nginx, "-p", str(run_dir), "-c", str(nginx_conf)],
        "web": [
            gunicorn,
            "-c",
            str(DEPLOY / "gunicorn/web.conf.py"),
            "storefront.wsgi:app",
        ],
        "stream": [
            gunicorn,
            "-c",
            str(DEPLOY / "gunicorn/stream.conf.py"),
            "storefront.wsgi:app",
        ],
        "worker": [str(BIN / "flask"), "--app", "storefront", "outbox", "work"],
        "relay": [str(BIN / "flask"), "--app", "storefront", "streams", "relay"],
    }


def accepts(address: str) -> bool:
    """Whether a gunicorn bind address (``host:port`` or ``unix:path``) accepts
    connections; an inherited ``fd://`` socket is taken as listening."""
    if address.startswith("fd://"):
        return True
    try:
        if address.startswith("unix:"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(address[5:])
        else:
            host, _, port = address.rpartition(":")
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except (OSError, ValueError):
        return False
    return True


def wait_until_up(
    url: str,
    host: str,
    pools: list[str],
    processes: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Wait until both pools accept connections, then until nginx answers
    ``/healthz`` for the public ``host``: asking nginx first would only log
    refused upstreams."""
    deadline = time.monotonic() + 60
    waiting = list(pools)
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
        waiting = [address for address in waiting if not accepts(address)]
        if not waiting:
            try:
                probe = urllib.request.Request(f"{url}/healthz", headers={"Host": host})
                urllib.request.urlopen(probe, timeout=2).close()
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            if waiting:
                raise RuntimeError(f"{', '.join(waiting)} did not listen within 60 s")
            raise RuntimeError(f"{url}/healthz did not answer within 60 s")
        time.sleep(0.2)


def record_pids(processes: dict[str, subprocess.Popen[bytes]], pid_file: Path) -> None:
    """Write each process' pid, and its program as a marker, for ``make down``."""
    pid_file.write_text(
        json.dumps({n: [p.pid, p.args[0]] for n, p in processes.items()})
    )


class Restarts:
    """When to start a process that exited again: after 1 s, doubling to 30 s
    while it keeps exiting, back to 1 s once it ran for a minute."""

    def __init__(self) -> None:
        self.delay: dict[str, float] = {}
        self.at: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def running(self, name: str) -> None:
        started = self.started.setdefault(name, time.monotonic())
        if time.monotonic() - started > 60:
            self.delay.pop(name, None)

    def due(self, name: str, returncode: int) -> bool:
        """Whether to start ``name`` again now; says when it will be."""
        now = time.monotonic()
        if name not in self.at:
            delay = self.delay.get(name, 1.0)
            self.delay[name] = min(delay * 2, 30.0)
            self.at[name] = now + delay
            print(
                f"make up: {name} exited with {returncode}; starting it again"
                f" in {delay:.0f} s.",
                flush=True,
            )
            return False
        if now < self.at[name]:
            return False
        del self.at[name]
        self.started[name] = now
        return True


def stop(processes: dict[str, subprocess.Popen[bytes]], pid_file: Path) -> None:
    """TERM every process we started, by pid; KILL what is left after 20 s."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    pid_file.unlink(missing_ok=True)


def down(pid_file: Path) -> int:
    """Stop the processes a previous run recorded, if they are still the ones
    it started."""
    if not pid_file.exists():
        print("Nothing is running.")
        return 0
    recorded: dict[str, list[t.Any]] = json.loads(pid_file.read_text())
    for name, (pid, marker) in recorded.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            print(f"Stopped {name} (pid {pid}).")
    pid_file.unlink()
    return 0


def up(args: argparse.Namespace, run_dir: Path, pid_file: Path) -> int:
    if pid_file.exists():
        fail(f"a previous run is recorded in {pid_file}: run 'make down' first.")
    env = settings(run_dir, args.listen)
    origin = public_origin(env)
    streams_per_address()  # refused before anything starts
    check_postgres(env["STOREFRONT_DATABASE_URL"])
    check_redis(env["STOREFRONT_REDIS_URL"])
    env["WEB_BIND"], env["STREAM_BIND"] = args.web, args.stream
    flask(env, "init-db")
    flask(env, "demo")
    flask(env, "assets", "build")
    nginx_conf = render_nginx(run_dir, args, env, origin)
    fresh_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def on_signal(signum: int, frame: t.Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        every = commands(run_dir, nginx_conf)
        for name, command in every.items():
            processes[name] = subprocess.Popen(command, env=env, cwd=ROOT)
        record_pids(processes, pid_file)
        url = f"http://{args.listen}"
        wait_until_up(url, origin.netloc, [args.web, args.stream], processes)
        public = env["STOREFRONT_PUBLIC_URL"]
        print(f"\nThe storefront is up on {public} (Ctrl-C stops it).\n", flush=True)
        restarts = Restarts()
        while not stopping:
            for name, process in list(processes.items()):
                if process.poll() is None:
                    restarts.running(name)
                    continue
                if restarts.due(name, process.returncode):
                    processes[name] = subprocess.Popen(every[name], env=env, cwd=ROOT)
                    record_pids(processes, pid_file)
                    print(
                        f"make up: started {name} again (pid {processes[name].pid}).",
                        flush=True,
                    )
            time.sleep(0.5)
        return 0
    finally:
        stop(processes, pid_file)
        print("Stopped every process of this run.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file = run_dir / "pids.json"
    if args.down:
        return down(pid_file)
    return up(args, run_dir, pid_file)


if __name__ == "__main__":
    sys.exit(main())
