"""gunicorn's settings for Understudy; `gunicorn wsgi:app` in the repo root reads this file, `understudy serve` too.

Any of these can be overridden on the command line or in GUNICORN_CMD_ARGS,
e.g. `gunicorn wsgi:app -b 0.0.0.0:8000 -w 4`.
"""

import multiprocessing
import os
import sys

# Connexion 3 apps are ASGI; gunicorn 25.1+ serves them with its own asyncio worker, which
# app/http/worker.py makes take turns at the shared listening socket (so workers share connections out).
worker_class = "app.http.worker.Worker"
# One worker per core: each worker is one event loop plus a pool of handler threads.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# A worker that stops answering its heartbeat for this long is replaced. The asgi worker also waits
# this long for the next piece of a request body; a client that goes quiet mid-body gets a 408.
timeout = 30
# On SIGTERM a worker stops accepting connections and waits up to this long for those it has: in-flight
# requests and streams finish, idle keep-alive connections close when their keep-alive runs out; then
# whatever is left is cut off.
graceful_timeout = 30
# asyncio's own loop, even where uvloop is installed: app/http/worker.py shares connections out on it, and
# uvloop would drop a SIGTERM that arrives while a worker is still loading the app.
asgi_loop = "asyncio"
# gunicorn refuses these requests itself, before any of Understudy runs, with a text/plain answer and
# Connection: close: a request line over 4094 bytes (414), more than 100 header fields or one over
# 8190 bytes (431), a malformed or repeated Content-Length (400). They cannot be answered in the API's
# error shape: the HTTP parser refuses them before there is a request to route or an id to give it, and
# gunicorn has no hook for its own error responses (raising the limits only moves the line). The real
# API's edge answers such requests itself, not with the API's JSON either.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# Idle keep-alive connections are closed after this many seconds. A graceful shutdown also
# waits for idle connections, so a short keep-alive keeps restarts quick.
keepalive = 2
# Errors to stderr; no access log unless asked for (--access-logfile -).
errorlog = "-"
# gunicorn 27's control socket sits at one path per user, so two servers on one machine
# (tests, benchmarks, a proxy and its upstream) would fight over it; Understudy does not use it.
control_socket_disable = True


def on_starting(server):
    """Give the workers one shared state file and one metrics directory, and check the configuration once, in the
    master."""
    import tempfile

    from app import ConfigError, check_configuration
    from backends.state import default_state_file

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus_client's multi-process mode (UNDERSTUDY_METRICS): each worker writes its values to files here,
        # and a scrape of any worker sums them all. Set before anything imports the library, and before the fork.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="understudy-metrics-")
        server.made_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

    if "UNDERSTUDY_STATE_FILE" not in os.environ:
        # Set before the workers fork, so all of them (and their replacements) share sequences and the journal.
        os.environ["UNDERSTUDY_STATE_FILE"] = str(default_state_file())
        # Noted on the master (gunicorn's arbiter), not in this module: a SIGHUP reads this file again.
        server.made_state_file = os.environ["UNDERSTUDY_STATE_FILE"]
    try:
        check_configuration()
    except ConfigError as error:
        on_exit(server)  # no worker will start: the state file made for them goes
        sys.exit(f"understudy: configuration error: {error}")


def child_exit(server, worker):
    """A worker is gone: its live values (open streams) no longer count; what it counted stays in the sums."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and "prometheus_client" in sys.modules:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the state file and the metrics directory this server made for itself, and the files kept beside the
    state file (named ones stay)."""
    import shutil
    from pathlib import Path

    from backends.files import default_files_dir
    from backends.state import remove_state_file

    made = getattr(server, "made_state_file", None)
    if made is not None:
        remove_state_file(made)
        shutil.rmtree(default_files_dir(Path(made)), ignore_errors=True)  # used when no directory was configured
    metrics = getattr(server, "made_metrics_dir", None)
    if metrics is not None:
        shutil.rmtree(metrics, ignore_errors=True)
