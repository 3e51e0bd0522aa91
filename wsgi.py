"""The server as gunicorn loads it: `gunicorn wsgi:app` (its settings are in gunicorn.conf.py).

`app` is an ASGI application — Connexion 3's FlaskApp — although the file keeps
the conventional name: gunicorn 25.1 and later serve ASGI natively with the
`asgi` worker class that gunicorn.conf.py sets, so the usual command works.

`application` is the same server as a plain WSGI callable, for servers that
speak only WSGI (gunicorn's sync worker, uWSGI, mod_wsgi):
`gunicorn wsgi:application -k sync`. It runs the whole ASGI stack — spec
validation included — through a2wsgi's ASGI-to-WSGI adapter.
"""

from a2wsgi import ASGIMiddleware

from app import ConfigError, create_app

try:
    app = create_app()
except ConfigError as error:
    raise SystemExit(f"understudy: configuration error: {error}") from None

application = ASGIMiddleware(app)
