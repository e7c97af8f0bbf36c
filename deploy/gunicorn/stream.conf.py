"""gunicorn settings for the stream pool: gevent workers that hold the long-lived
``/streams/`` connections, so they never take a web worker.

Every value comes from an environment variable, with the default shown.
Run: ``gunicorn -c deploy/gunicorn/stream.conf.py storefront.wsgi:app``
"""

import gc
import os
import resource

# STREAM_BIND: where nginx's "streams" upstream points.
bind = os.environ.get("STREAM_BIND", "127.0.0.1:8002")
# STREAM_WORKERS: processes; one per core is enough, each holds many streams.
workers = int(os.environ.get("STREAM_WORKERS", "1"))
worker_class = "gevent"
# STREAM_WORKER_CONNECTIONS: open streams per process. Raise `ulimit -n` with it
# (one file descriptor per stream, plus nginx's two).
worker_connections = int(os.environ.get("STREAM_WORKER_CONNECTIONS", "10000"))
# For gevent workers the timeout only checks that the worker's loop still runs.
timeout = int(os.environ.get("STREAM_TIMEOUT", "30"))
# STREAM_GRACEFUL_TIMEOUT: on HUP or TERM each stream is ended at once with a
# spread-out retry: hint (see post_worker_init); this is the safety net after.
graceful_timeout = int(os.environ.get("STREAM_GRACEFUL_TIMEOUT", "10"))
keepalive = int(os.environ.get("STREAM_KEEPALIVE", "75"))
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# STREAM_ACCESS_LOG: a path, "-" for standard output, empty for none.
accesslog = os.environ.get("STREAM_ACCESS_LOG", "-") or None
errorlog = "-"
# STOREFRONT_LOG_FORMAT (json in deploy/up.py, the Procfile and supervisor;
# unset: gunicorn's own format): gunicorn's lines in the app's format, text or
# one JSON object per line, each with the request id of nginx or the app.
if os.environ.get("STOREFRONT_LOG_FORMAT"):
    from storefront.logs import gunicorn_logconfig

    logconfig_dict = gunicorn_logconfig(
        os.environ["STOREFRONT_LOG_FORMAT"], access_log=accesslog, error_log=errorlog
    )
# STREAM_CONTROL_SOCKET: the socket `gunicornc` talks to; each pool needs its own
# (gunicorn >= 25 puts both in the same place by default).
control_socket = os.environ.get(
    "STREAM_CONTROL_SOCKET", os.path.expanduser("~/.gunicorn/storefront-stream.ctl")
)
proc_name = "storefront-stream"


#: Files a worker holds besides its streams: the listener, Redis, the database,
#: logs, the control socket.
SPARE_FILES = 256


def on_starting(server):
    """Raise the soft limit on open files to what the streams need, up to the
    hard limit, before the workers fork: process managers often start programs
    at 1024 (systemd's default soft limit), a tenth of the default streams.
    Says so when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = worker_connections + SPARE_FILES
    if hard != resource.RLIM_INFINITY and hard < needed:
        server.log.warning(
            "STREAM_WORKER_CONNECTIONS=%d needs %d open files, but the hard limit"
            " is %d: raise it (ulimit -Hn, systemd's LimitNOFILE, supervisord's"
            " minfds) or lower STREAM_WORKER_CONNECTIONS.",
            worker_connections,
            needed,
            hard,
        )
        needed = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# STREAM_GC_THRESHOLD: objects allocated before a young garbage collection
# (Python's default is 700). See tune_gc.
gc_threshold = int(os.environ.get("STREAM_GC_THRESHOLD", "50000"))


def tune_gc():
    """A stream worker's heap is mostly long-lived: about 75 tracked objects
    per open stream, 750,000 at 10,000 streams. With the default threshold, an
    event woken on every stream leaves enough young objects in flight (a
    callback and a few frames per stream) to promote them in bulk, and every
    few events Python then walks the whole heap: a 400 ms pause for nothing,
    as they are all alive. A threshold above that burst lets the in-flight
    objects die young; freezing what start-up built keeps it out of every
    full collection."""
    gc.collect()  # so that no garbage of start-up is frozen for good
    gc.freeze()
    gc.set_threshold(gc_threshold, 10, 10)


def post_worker_init(worker):
    """Tune the garbage collector (see tune_gc). When the worker is told to
    stop (TERM, or HUP on the master, which replaces the workers), end every
    open stream of flask-patterns with a spread-out retry: hint. The clients
    reconnect to the new workers over a few seconds and replay what they
    missed, instead of all at once when the graceful timeout runs out."""
    import gevent

    tune_gc()
    try:
        from flask_patterns.streams import close_streams
    except ImportError:  # an app without flask-patterns (Flask-SSE in the bench)
        return

    def close_streams_on_shutdown():
        while worker.alive:
            gevent.sleep(0.2)
        closed = close_streams(worker.wsgi)
        worker.log.info("Closed %d streams before shutting down.", closed)

    gevent.spawn(close_streams_on_shutdown)


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
