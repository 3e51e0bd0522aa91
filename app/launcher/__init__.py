"""Starting Understudy from outside its own process: a server in a child process and the pytest fixture.

Nothing here imports the server: `server_process` runs gunicorn in a child
process and waits for it, and `pytest_plugin` is the `understudy` fixture
built on it, so a test suite pays for the server only in the child.
"""
