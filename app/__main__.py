"""`python -m app`: a development server — gunicorn with one worker that reloads on code changes.

Extra arguments go to gunicorn, e.g. `python -m app -b 127.0.0.1:9000`.
"""

import sys

from gunicorn.app.wsgiapp import run

if __name__ == "__main__":
    sys.argv = ["gunicorn", "wsgi:app", "--workers", "1", "--reload", "--log-level", "debug", *sys.argv[1:]]
    run()
