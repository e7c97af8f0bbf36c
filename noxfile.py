"""The library on every supported Python, at the lowest versions it declares, as
a built wheel in a fresh venv, and its documentation site.

``make test`` runs everything on the project's own interpreter; ``.ci/run`` runs
these sessions beside it. Each one needs only what the library's tests need: the
storefront and the deployment are not installed.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True

ROOT = pathlib.Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
# The Python of the project's .venv, which runs nox: `make test` has just run the
# library's tests on it (with coverage), so `nox` alone skips that one.
OWN = f"{sys.version_info.major}.{sys.version_info.minor}"
nox.options.sessions = [
    *(f"tests-{version}" for version in PYTHONS if version != OWN),
    "lowest",
    "wheel",
    "docs",
]
# Every extra, as the tests exercise each of them.
EXTRAS = ",".join(PYPROJECT["project"]["optional-dependencies"])
# The environment of every test session: the tests find their services through it.
PASS_ENV = ("CI", "TEST_DATABASE_URL", "REDIS_URL")


def _run_tests(session: nox.Session) -> None:
    env = {name: os.environ[name] for name in PASS_ENV if name in os.environ}
    session.run("python", "-m", "pytest", "tests", "-p", "no:cacheprovider",
                *session.posargs, env=env)  # fmt: skip


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The library's tests on one interpreter, at the newest versions allowed."""
    session.install(f".[{EXTRAS}]", *nox.project.dependency_groups(PYPROJECT, "tests"))
    _run_tests(session)


@nox.session(python=PYTHONS[0])
def lowest(session: nox.Session) -> None:
    """The tests and ``mypy --strict`` at the lowest version of every direct
    dependency, on the oldest Python: the floors in pyproject.toml are tested."""
    session.install(
        "--resolution=lowest-direct",
        f".[{EXTRAS}]",
        *nox.project.dependency_groups(PYPROJECT, "tests"),
        "mypy>=1.13",
    )
    session.run("uv", "pip", "list", silent=False)
    session.run("mypy", "--python-version", PYTHONS[0], "src/flask_patterns")
    _run_tests(session)


@nox.session(python=PYTHONS[0])
def wheel(session: nox.Session) -> None:
    """Build the sdist and the wheel, check what the sdist holds and what PyPI
    would say of both, install the wheel (and nothing else) into a fresh venv
    on the oldest Python, and follow docs/getting-started.md literally."""
    dist = pathlib.Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("uv", "build", "--out-dir", str(dist), str(ROOT), external=True)
    (sdist,) = dist.glob("flask_patterns-*.tar.gz")
    _check_sdist(session, sdist)
    (wheel_file,) = dist.glob("flask_patterns-*.whl")
    # What PyPI checks on upload: the metadata, and that the README renders.
    session.run("uv", "tool", "run", "--from", "twine>=6.1", "twine", "check",
                "--strict", str(sdist), str(wheel_file), external=True)  # fmt: skip
    session.install(str(wheel_file))
    _try_getting_started(session)


#: What the sdist must hold, and what no run of the tests may add to it.
SDIST_NEEDS = (
    "LICENSE",
    "CHANGELOG.md",
    "README.md",
    "src/flask_patterns/py.typed",
    "tests/conftest.py",
    "docs/conf.py",
    "docs/examples/notes.py",
)
SDIST_REFUSES = (".hypothesis", "__pycache__", ".pyc", "docs/_build", ".coverage")


def _check_sdist(session: nox.Session, sdist: pathlib.Path) -> None:
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    missing = [need for need in SDIST_NEEDS if need not in names]
    generated = [name for name in names if any(bad in name for bad in SDIST_REFUSES)]
    if missing or generated:
        session.error(f"sdist: missing {missing}, generated files {generated[:5]}")
    session.log(f"{sdist.name}: {len(names)} entries, none generated")


def _try_getting_started(session: nox.Session) -> None:
    bin_dir = pathlib.Path(session.bin)
    with tempfile.TemporaryDirectory() as work:
        shutil.copy(ROOT / "docs/examples/notes.py", work)
        flask = str(bin_dir / "flask")
        session.log("flask --app notes init-db")
        subprocess.run([flask, "--app", "notes", "init-db"], cwd=work, check=True)
        port = _free_port()
        server = subprocess.Popen(
            [flask, "--app", "notes", "run", "--port", str(port)],
            cwd=work,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(base + "/notes")
            body = urllib.parse.urlencode({"text": "hello"}).encode()
            with urllib.request.urlopen(base + "/notes", data=body) as response:
                created = response.read().decode()
            with urllib.request.urlopen(base + "/notes") as response:
                listed = response.read().decode()
        finally:
            server.terminate()
            server.wait(timeout=10)
    session.log(f"POST /notes -> {created.strip()}; GET /notes -> {listed.strip()}")
    if '"hello"' not in listed:
        session.error("the note posted in getting-started is not listed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@nox.session(python=PYTHONS[1])
def docs(session: nox.Session) -> None:
    """The documentation site, with every Sphinx warning an error."""
    session.install(f".[{EXTRAS}]", *nox.project.dependency_groups(PYPROJECT, "docs"))
    out = ROOT / "docs/_build/html"
    session.run("sphinx-build", "--fail-on-warning", "--keep-going",
                "--builder", "html", "docs", str(out))  # fmt: skip
