"""The shipped supervisor config and Procfile, run by supervisord and honcho as
shipped, through a 60 s PostgreSQL outage: no process exits or is restarted,
and once the database answers the shop is ready and the mail queued during the
outage goes out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa
from bench import procfs

from .deployment import queue_mail
from .deployment import ROOT
from .deployment import wait_for

BIN = Path(sys.executable).parent
OUTAGE = 60.0


def administer(postgres_server, statement):
    """Run ``statement`` outside a transaction in the server's postgres database."""
    admin = sa.make_url(postgres_server).set(
        drivername="postgresql", database="postgres"
    )
    with psycopg.connect(
        admin.render_as_string(hide_password=False), autocommit=True
    ) as connection:
        connection.execute(statement)


class Deployment:
    """The storefront's processes under one process manager, on a database of
    their own reached through ``relay_port``."""

    def __init__(self, name, tmp, postgres_server, relay_port, redis_db, smtp, ports):
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir()
        server = sa.make_url(postgres_server)
        self.database = f"storefront_{name}_{uuid.uuid4().hex[:8]}"
        self.direct = server.set(database=self.database)
        relayed = self.direct.set(host="127.0.0.1", port=relay_port)
        self.web = f"127.0.0.1:{ports()}"
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "STOREFRONT_DATABASE_URL": relayed.render_as_string(hide_password=False),
            "STOREFRONT_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "STOREFRONT_SMTP_URL": smtp.url,
            "STOREFRONT_SECRET_KEY": f"{name} test",
            "STOREFRONT_PUBLIC_URL": f"http://{self.web}",
            "WEB_BIND": self.web,
            "WEB_WORKERS": "1",
            "STREAM_BIND": f"127.0.0.1:{ports()}",
            "WEB_CONTROL_SOCKET": str(self.dir / "web.ctl"),
            "STREAM_CONTROL_SOCKET": str(self.dir / "stream.ctl"),
            "PROMETHEUS_MULTIPROC_DIR": str(self.dir / "metrics"),
        }
        self.env.pop("STOREFRONT_DEV_MAILBOX", None)
        self.process: subprocess.Popen[bytes] | None = None

    def create_database(self, postgres_server):
        administer(postgres_server, f'CREATE DATABASE "{self.database}"')
        subprocess.run(
            [str(BIN / "flask"), "--app", "storefront", "init-db"],
            env={
                **self.env,
                "STOREFRONT_DATABASE_URL": self.direct.render_as_string(
                    hide_password=False
                ),
            },
            check=True,
            capture_output=True,
        )

    def drop_database(self, postgres_server):
        administer(postgres_server, f'DROP DATABASE "{self.database}" WITH (FORCE)')

    def ready(self):
        request = urllib.request.Request(f"http://{self.web}/readyz")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Supervisor(Deployment):
    """``deploy/supervisor/storefront.conf``, its paths moved from /srv and
    /var/log into the checkout and a temporary folder, included from a minimal
    supervisord.conf."""

    def start(self):
        shipped = (ROOT / "deploy" / "supervisor" / "storefront.conf").read_text()
        programs = (
            shipped.replace("/srv/storefront/.venv", sys.prefix)
            .replace("/srv/storefront", str(ROOT))
            .replace("/var/log/storefront", str(self.dir))
            .replace("/run/storefront", str(self.dir))
        )
        (self.dir / "storefront.conf").write_text(programs)
        self.config = self.dir / "supervisord.conf"
        self.config.write_text(
            f"[unix_http_server]\nfile={self.dir}/supervisor.sock\n"
            f"[supervisord]\nnodaemon=true\nlogfile={self.dir}/supervisord.log\n"
            f"pidfile={self.dir}/supervisord.pid\nchildlogdir={self.dir}\n"
            "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory ="
            " supervisor.rpcinterface:make_main_rpcinterface\n"
            f"[supervisorctl]\nserverurl=unix://{self.dir}/supervisor.sock\n"
            f"[include]\nfiles={self.dir}/storefront.conf\n"
        )
        self.process = subprocess.Popen(
            [str(BIN / "supervisord"), "-c", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def programs(self):
        """{program: (state, pid)} as supervisorctl tells."""
        status = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.config), "status"],
            capture_output=True,
            text=True,
            env=self.env,
        ).stdout
        found = {}
        for line in status.splitlines():
            name, state, *rest = line.split(None, 2)
            pid = re.search(r"pid (\d+)", rest[0]) if rest else None
            found[name] = (state, int(pid[1]) if pid else None)
        return found

    def log(self):
        return "\n".join(
            f"{path.name}:\n{path.read_text()}"
            for path in sorted(self.dir.glob("*.log"))
        )

    def worker_log(self):
        return (self.dir / "worker.log").read_text()


class Honcho(Deployment):
    """``deploy/Procfile`` under ``honcho start``, which stops every process
    as soon as one exits."""

    def start(self):
        self.output = (self.dir / "honcho.log").open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "honcho"), "-f", "deploy/Procfile", "-d", str(ROOT), "start"],
            cwd=ROOT,
            env=self.env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )

    def programs(self):
        """{pid: command} of every process below honcho."""
        return {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            for pid in procfs.tree(self.process.pid)[1:]
        }

    def stop(self):
        super().stop()
        self.output.close()

    def log(self):
        return (self.dir / "honcho.log").read_text()

    def worker_log(self):
        return "\n".join(
            line
            for line in self.log().splitlines()
            if re.match(r"\S+ worker\.1 ", line)
        )


def test_supervisor_and_the_procfile_outlast_a_minute_without_the_database(
    tmp_path, postgres_server, postgres_relay, redis_server, port_factory, smtp_server
):
    args = (tmp_path, postgres_server, postgres_relay.port)
    deployments = [
        Supervisor("supervisor", *args, 13, smtp_server, port_factory),
        Honcho("honcho", *args, 14, smtp_server, port_factory),
    ]
    try:
        for deployment in deployments:
            deployment.create_database(postgres_server)
            deployment.start()
        for deployment in deployments:
            wait_for(lambda d=deployment: d.ready() == 200, 60, deployment.log)
        supervised = deployments[0].programs()
        assert len(supervised) == 4, supervised
        assert {state for state, _ in supervised.values()} == {"RUNNING"}, supervised
        beneath_honcho = deployments[1].programs()

        postgres_relay.cut()
        cut = time.monotonic()
        for deployment in deployments:
            wait_for(lambda d=deployment: d.ready() == 503, 30, deployment.log)
            # psycopg 3 also where SQLAlchemy 2.0 would pick psycopg2.
            engine = sa.create_engine(
                deployment.direct.set(drivername="postgresql+psycopg")
            )
            queue_mail(engine, f"queued during the outage under {deployment.name}")
            engine.dispose()
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut)))
        postgres_relay.restore()

        for deployment in deployments:
            wait_for(lambda d=deployment: d.ready() == 200, 60, deployment.log)
        subjects = lambda: {m["Subject"] for m in smtp_server.messages}  # noqa: E731
        wait_for(
            lambda: (
                subjects()
                == {f"queued during the outage under {d.name}" for d in deployments}
            ),
            60,
            lambda: f"{subjects()}\n{deployments[0].log()}\n{deployments[1].log()}",
        )
        assert deployments[0].programs() == supervised, deployments[0].log()
        assert deployments[1].process.poll() is None, deployments[1].log()
        assert deployments[1].programs() == beneath_honcho, deployments[1].log()
        for deployment in deployments:
            log = deployment.worker_log()
            assert log.count("waits for an outage to end") == 1, log
            assert log.count("works again") == 1, log
    finally:
        for deployment in deployments:
            deployment.stop()
        postgres_relay.restore()
        for deployment in deployments:
            deployment.drop_database(postgres_server)
