"""Starting Understudy from outside its own process: the command, a server in a child process, the pytest fixture.

Nothing here imports the server: `cli` is the `understudy` command,
`server_process` runs gunicorn in a child process and waits for it, and
`pytest_plugin` is the `understudy` fixture built on it, so a test suite pays
for the server only in the child.

In a checkout this is `app/launcher/`; in the wheel it is the top-level package
`understudy`, the wheel's only one (setup.cfg maps the directory to that name).
So it imports only the standard library, pytest and yaml, and its own modules
relatively: it runs in the user's process, next to the user's own packages —
which may well be called `app` and `backends`.

The server itself — app/, backends/, openapi.yaml, wsgi.py, gunicorn.conf.py —
runs in a child process whose sys.path starts with the server tree
(`server_tree.py`): the repository root in a checkout, a copy under
`understudy/server/` in the wheel. There it is `app` and `backends` as in a
checkout, and the user's packages of those names are not in its way.
"""
