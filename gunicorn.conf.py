"""gunicorn's settings for Understudy; `gunicorn wsgi:app` in the repo root reads this file.

Any of these can be overridden on the command line or in GUNICORN_CMD_ARGS,
e.g. `gunicorn wsgi:app -b 0.0.0.0:8000 -w 4`.
"""

import contextlib
import multiprocessing
import os
import sys

# Connexion 3 apps are ASGI; gunicorn 25.1+ serves them with its own asyncio worker.
worker_class = "asgi"
# One worker per core: each worker is one event loop plus a pool of handler threads.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count()))
# A worker that stops answering its heartbeat for this long is replaced.
timeout = 30
# On SIGTERM, in-flight requests and streams get this long to finish.
graceful_timeout = 30
# Idle keep-alive connections are closed after this many seconds. A graceful shutdown also
# waits for idle connections, so a short keep-alive keeps restarts quick.
keepalive = 2
# Errors to stderr; no access log unless asked for (--access-logfile -).
errorlog = "-"
# gunicorn 27's control socket sits at one path per user, so two servers on one machine
# (tests, benchmarks, a proxy and its upstream) would fight over it; Understudy does not use it.
control_socket_disable = True


# The state files this master made for its workers, removed when it exits.
made_state_files = []


def on_starting(server):
    """Give the workers one shared state file, and check the configuration once, in the master."""
    from app import ConfigError, create_app
    from backends.state import default_state_file

    if "UNDERSTUDY_STATE_FILE" not in os.environ:
        # Set before the workers fork, so all of them (and their replacements) share sequences and the journal.
        os.environ["UNDERSTUDY_STATE_FILE"] = str(default_state_file())
        made_state_files.append(os.environ["UNDERSTUDY_STATE_FILE"])
    try:
        create_app()
    except ConfigError as error:
        sys.exit(f"understudy: configuration error: {error}")


def on_exit(server):
    """Remove the state file this server made for itself (one named by the operator stays)."""
    for made in made_state_files:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(made + suffix)
