"""gunicorn's settings for Understudy; `gunicorn wsgi:app` in the repo root reads this file.

Any of these can be overridden on the command line or in GUNICORN_CMD_ARGS,
e.g. `gunicorn wsgi:app -b 0.0.0.0:8000 -w 4`.
"""

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
# Idle keep-alive connections are closed after this many seconds.
keepalive = 5
# Errors to stderr; no access log unless asked for (--access-logfile -).
errorlog = "-"
# gunicorn 27's control socket sits at one path per user, so two servers on one machine
# (tests, benchmarks, a proxy and its upstream) would fight over it; Understudy does not use it.
control_socket_disable = True


def on_starting(server):
    """Check the configuration once, in the master, so a mistake stops start-up with one clear line."""
    from app import ConfigError, create_app

    try:
        create_app()
    except ConfigError as error:
        sys.exit(f"understudy: configuration error: {error}")
