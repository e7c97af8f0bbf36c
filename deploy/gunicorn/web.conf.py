"""gunicorn settings for the web pool: every request except the event streams.

Every value comes from an environment variable, with the default shown.
Run: ``gunicorn -c deploy/gunicorn/web.conf.py storefront.wsgi:app``
"""

import multiprocessing
import os

# WEB_BIND: where nginx's "web" upstream points.
bind = os.environ.get("WEB_BIND", "127.0.0.1:8001")
# WEB_WORKERS: processes; 2 per core plus one keeps the cores busy while some
# requests wait on the database.
workers = int(os.environ.get("WEB_WORKERS", multiprocessing.cpu_count() * 2 + 1))
# WEB_WORKER_CLASS / WEB_THREADS: threads per process. Keep threads at or under
# the database pool's size plus overflow (5 + 10), so no request waits for a
# connection.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
threads = int(os.environ.get("WEB_THREADS", "4"))
# WEB_TIMEOUT: a request running longer than this is killed; WEB_GRACEFUL_TIMEOUT:
# how long a reload (HUP) or stop (TERM) waits for requests in flight.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
# WEB_KEEPALIVE: seconds an idle keep-alive connection from nginx stays open.
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
# WEB_MAX_REQUESTS: recycle a worker after this many requests (0: never), with
# jitter so that workers do not restart together.
max_requests = int(os.environ.get("WEB_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
# Only nginx on this machine may set X-Forwarded-*; the app applies ProxyFix with
# the exact number of proxies (STOREFRONT_PROXY_HOPS).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
errorlog = "-"
# STOREFRONT_LOG_FORMAT (json in deploy/up.py, the Procfile and supervisor;
# unset: gunicorn's own format): gunicorn's lines in the app's format, text or
# one JSON object per line, each with the request id of nginx or the app.
if os.environ.get("STOREFRONT_LOG_FORMAT"):
    from storefront.logs import gunicorn_logconfig

    logconfig_dict = gunicorn_logconfig(
        os.environ["STOREFRONT_LOG_FORMAT"], access_log=accesslog, error_log=errorlog
    )
# WEB_CONTROL_SOCKET: the socket `gunicornc` talks to; each pool needs its own
# (gunicorn >= 25 puts both in the same place by default).
control_socket = os.environ.get(
    "WEB_CONTROL_SOCKET", os.path.expanduser("~/.gunicorn/storefront-web.ctl")
)
proc_name = "storefront-web"


def child_exit(server, worker):
    """A worker exited (or was killed): drop its live gauges, such as its open
    streams, from the metrics every process of the machine writes to
    PROMETHEUS_MULTIPROC_DIR; its counters stay in the totals."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:  # an app without metrics
        return
    multiprocess.mark_process_dead(worker.pid)
