"""Requests per second for one hashed static file, served by the storefront under
gunicorn and by nginx from the build, side by side.

``flask assets build`` writes the hashed copies, their gzip siblings and the
manifest into a temporary folder. Two servers then answer the same URL,
``/static/style.<hash>.css``, on free ports of 127.0.0.1:

- *app*: the storefront under gunicorn (``-k gthread``, 2 workers of 4
  threads), in manifest mode, so each request goes through the whole app (its
  before-request hooks, the unit of work, the static view of
  ``flask_patterns.assets``) and the file leaves through ``wsgi.file_wrapper``;
- *nginx*: an nginx of its own (2 worker processes, a config in the temporary
  folder, started and stopped by this script) serving the same folder, with
  ``gzip_static`` and the immutable header on hashed names.

wrk (keep-alive connections, one thread) loads each server in turn, for the
identity and the gzip encoding, in rounds whose order alternates, so that both
meet the same noise; the figures are the medians of the rounds. Before measuring,
both servers must answer the same bytes and the immutable ``Cache-Control``, and
any non-2xx answer during a run fails the benchmark.

Why: the app serving hashed files is the fallback when no front server does;
this shows what handing them to nginx is worth. The two CPUs of a small machine
are shared by wrk and the server, so the ratio matters more than the figures.

Run it with ``make bench-static`` (or ``make bench``); it needs ``nginx`` and
``wrk`` (Debian: ``apt-get install -y nginx wrk``), prints a table and rewrites
its own section of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from dataclasses import dataclass
from dataclasses import field
from importlib import metadata
from pathlib import Path

from bench.report import add_report_options
from bench.report import echoed_arguments
from bench.report import free_port
from bench.report import machine
from bench.report import report_path
from bench.report import run_time
from bench.report import Section

ROOT = Path(__file__).resolve().parent.parent
SECTION = Section("static-files")
ASSET = "style.css"
IMMUTABLE = "public, max-age=31536000, immutable"
SERVERS = ("app", "nginx")
ENCODINGS = ("identity", "gzip")
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4
NGINX_WORKERS = 2

NGINX_CONF = """\
daemon off;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location ~ "^/static/(?<asset>.+\\.[0-9a-f]{{12}}(\\.[^./]+)?)$" {{
            alias {root}/$asset;
            gzip_static on;
            gzip_vary on;
            add_header Cache-Control "{immutable}";
        }}
        location /static/ {{
            alias {root}/;
            add_header Cache-Control "no-cache";
        }}
    }}
}}
"""


@dataclass
class Settings:
    rounds: int
    duration: int
    connections: int
    machine: str = ""
    arguments: str = ""
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Result:
    server: str
    encoding: str
    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(run, name) for run in self.runs))


# Processes.


def wait_until_up(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with status {process.returncode}.")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not answer {url} within 30 s.") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop one process this script started, by its pid."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def app_environment(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "STOREFRONT_DATABASE_URL": f"sqlite:///{tmp / 'shop.sqlite'}",
        "STOREFRONT_SECRET_KEY": "static files benchmark",
        "STOREFRONT_PATTERNS_ASSETS_ROOT": str(tmp / "assets"),
        "FLASK_DEBUG": "0",
    }


def build(tmp: Path) -> str:
    """Build the storefront's assets; return the hashed name of :data:`ASSET`."""
    flask = [sys.executable, "-m", "flask", "--app", "storefront"]
    env = app_environment(tmp)
    subprocess.run([*flask, "init-db"], env=env, check=True, capture_output=True)
    subprocess.run([*flask, "assets", "build"], env=env, check=True)
    manifest = json.loads((tmp / "assets" / "manifest.json").read_text())
    return str(manifest["paths"][ASSET])


@contextlib.contextmanager
def gunicorn(tmp: Path, port: int, url: str) -> t.Iterator[None]:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "gthread",
        "--workers",
        str(GUNICORN_WORKERS),
        "--threads",
        str(GUNICORN_THREADS),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "storefront:create_app()",
    ]
    process = subprocess.Popen(command, env=app_environment(tmp))
    try:
        wait_until_up(url, process, "gunicorn")
        yield
    finally:
        stop(process)


@contextlib.contextmanager
def nginx(tmp: Path, port: int, url: str) -> t.Iterator[None]:
    folder = tmp / "nginx"
    folder.mkdir()
    config = folder / "nginx.conf"
    config.write_text(
        NGINX_CONF.format(
            workers=NGINX_WORKERS,
            tmp=folder,
            port=port,
            root=tmp / "assets",
            immutable=IMMUTABLE,
        )
    )
    binary = t.cast(str, shutil.which("nginx"))
    process = subprocess.Popen([binary, "-p", str(folder), "-c", str(config)])
    try:
        wait_until_up(url, process, "nginx")
        yield
    finally:
        stop(process)


# Checking and measuring.


def fetch(url: str, encoding: str) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read(), dict(response.headers)


def check_same_answers(urls: dict[str, str], expected: bytes) -> None:
    """Both servers answer the built file, compressed when asked, immutable."""
    for server, url in urls.items():
        for encoding in ENCODINGS:
            body, headers = fetch(url, encoding)
            if headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            elif encoding == "gzip":
                raise SystemExit(f"{server} did not serve the gzip copy.")
            if body != expected:
                raise SystemExit(f"{server} answered other bytes ({encoding}).")
            if headers.get("Cache-Control") != IMMUTABLE:
                raise SystemExit(f"{server} answered {headers.get('Cache-Control')!r}.")


_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, encoding: str, settings: Settings) -> Run:
    command = [
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(settings.connections),
        "--duration",
        f"{settings.duration}s",
        "--latency",
        "--header",
        f"Accept-Encoding: {encoding}",
        url,
    ]
    output = subprocess.run(
        command, check=True, capture_output=True, text=True, timeout=300
    ).stdout
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        raise SystemExit(f"wrk saw errors:\n{output}")
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    if rps is None or set(latency) != {"50", "99"}:
        raise SystemExit(f"Cannot read wrk's output:\n{output}")
    return Run(float(rps[1]), latency["50"], latency["99"])


def measure(urls: dict[str, str], settings: Settings) -> list[Result]:
    results = {(s, e): Result(s, e) for e in ENCODINGS for s in SERVERS}
    for server in SERVERS:  # warm up: imports, caches, connections
        wrk(urls[server], "identity", Settings(1, 1, settings.connections))
    for number in range(settings.rounds):
        order = SERVERS if number % 2 == 0 else SERVERS[::-1]
        for encoding in ENCODINGS:
            for server in order:
                run = wrk(urls[server], encoding, settings)
                results[server, encoding].runs.append(run)
                print(
                    f"round {number + 1} {server:5} {encoding:8}"
                    f" {run.rps:9.0f} req/s  p50 {run.p50_ms:.2f} ms"
                    f"  p99 {run.p99_ms:.2f} ms",
                    flush=True,
                )
    return list(results.values())


# The report.


def versions() -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for name in ("Flask", "Werkzeug", "gunicorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    found["nginx"] = nginx.strip().rsplit("/", 1)[-1]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    found["wrk"] = (wrk_version.stdout.split() or ["?", "?"])[1]
    return found


def summary_table(results: list[Result]) -> list[str]:
    by_key = {(r.server, r.encoding): r for r in results}
    lines = [
        "| Encoding | App req/s (median) | nginx req/s (median) | nginx / app"
        " | App p50 / p99 ms | nginx p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for encoding in ENCODINGS:
        app, ngx = by_key["app", encoding], by_key["nginx", encoding]
        ratio = ngx.median("rps") / app.median("rps")
        lines.append(
            f"| {encoding} | {app.median('rps'):.0f} | {ngx.median('rps'):.0f}"
            f" | **{ratio:.1f}x** | {app.median('p50_ms'):.2f} /"
            f" {app.median('p99_ms'):.2f} | {ngx.median('p50_ms'):.2f} /"
            f" {ngx.median('p99_ms'):.2f} |"
        )
    return lines


def rounds_table(results: list[Result]) -> list[str]:
    count = len(results[0].runs)
    numbers = " | ".join(str(i + 1) for i in range(count))
    lines = [
        f"| Server | Encoding | {numbers} |",
        "|---|---|" + "---:|" * count,
    ]
    for r in sorted(results, key=lambda r: (r.encoding, r.server)):
        cells = " | ".join(f"{run.rps:.0f}" for run in r.runs)
        lines.append(f"| {r.server} | {r.encoding} | {cells} |")
    return lines


def section(results: list[Result], settings: Settings, asset: str, size: int) -> str:
    now = run_time()
    software = ", ".join(f"{k} {v}" for k, v in settings.versions.items())
    parts = [
        SECTION.start,
        "## Static files: a hashed asset from the app (gunicorn) vs. nginx",
        "",
        f"- Date: {now}",
        f"- Machine: {settings.machine}",
        f"- Software: {software}",
        "- Command: `make bench-static`"
        f" (`python -m bench.static_files{settings.arguments}`)",
        "",
        "Method:",
        "",
        f"- The file: `/static/{asset}` ({size} bytes; its gzip copy from"
        " `flask assets build`), the storefront's stylesheet.",
        f"- *App*: `gunicorn -k gthread -w {GUNICORN_WORKERS} --threads"
        f" {GUNICORN_THREADS} 'storefront:create_app()'`, in manifest mode:"
        " every request runs the app's hooks and the static view of"
        " `flask_patterns.assets`, which picks the precompressed copy by"
        " `Accept-Encoding`.",
        f"- *nginx*: {NGINX_WORKERS} worker processes, `sendfile on`, the same"
        " folder through `alias`, `gzip_static on`, the immutable header on"
        " hashed names; a config of its own in a temporary folder.",
        f"- Load: `wrk -t1 -c{settings.connections} -d{settings.duration}s"
        " --latency` with `Accept-Encoding: identity` or `gzip`, keep-alive, on"
        " 127.0.0.1; wrk and the server share the machine's CPUs.",
        f"- {settings.rounds} rounds after a 1 s warm-up of each server; in each"
        " round each server is loaded once per encoding, the first server"
        " alternating between rounds. Figures are medians of the rounds. Both"
        " servers were checked to answer the same bytes and `Cache-Control:"
        f" {IMMUTABLE}` first, and any non-2xx answer or socket error fails the"
        " run.",
        "",
        *summary_table(results),
        "",
        "Requests per second, round by round:",
        "",
        *rounds_table(results),
        SECTION.end,
    ]
    return "\n".join(parts) + "\n"


# Command line.


def parse_args(argv: list[str] | None) -> tuple[Settings, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    add_report_options(parser)
    args = parser.parse_args(argv)
    settings = Settings(args.rounds, args.duration, args.connections)
    settings.arguments = echoed_arguments(argv)
    return settings, report_path(args)


def main(argv: list[str] | None = None) -> int:
    settings, report = parse_args(argv)
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        print(
            f"Needs {' and '.join(missing)}: apt-get install -y {' '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    settings.machine = machine()
    settings.versions = versions()
    with tempfile.TemporaryDirectory(prefix="bench-static-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)  # nginx's workers run as another user
        asset = build(tmp)
        expected = (tmp / "assets" / asset).read_bytes()
        ports = {server: free_port() for server in SERVERS}
        urls = {s: f"http://127.0.0.1:{p}/static/{asset}" for s, p in ports.items()}
        with (
            gunicorn(tmp, ports["app"], urls["app"]),
            nginx(tmp, ports["nginx"], urls["nginx"]),
        ):
            check_same_answers(urls, expected)
            results = measure(urls, settings)
    print("\n" + "\n".join(summary_table(results)))
    if report is not None:
        SECTION.write(report, section(results, settings, asset, len(expected)))
        print(f"\nWrote {report.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
