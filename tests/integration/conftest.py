"""A real server for the integration tests: gunicorn in a subprocess, driven by the official SDK."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import anthropic
import pytest

from app.launcher.server_process import ServerProcess

from builders import API_KEY
from node_clients import ensure_installed

#: How the suite's shared server runs: two workers, keys enforced, every JSON response checked against the spec.
SERVER_ENV = {"UNDERSTUDY_API_KEYS": f"{API_KEY},second-key", "UNDERSTUDY_VALIDATE_RESPONSES": "true"}


#: The one warning forgiven in integration tests (setup.cfg makes every other one an error): a client socket an HTTP
#: client library leaves to the garbage collector — httpcore's after a server worker was killed under it,
#: schemathesis's transport now and then — which pytest reports against whichever test is running when it is
#: collected. Each time it was the client's socket, never the server's (the server is a separate process).
CLIENT_SOCKETS_LEFT_TO_GC = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(scope="module", autouse=True)
def garbage_collected_at_teardown() -> Iterator[None]:
    """Collect what each integration module left, at its teardown: a socket a client library left is then reported
    (and forgiven) against an integration test, not against a later unit test that happens to collect. Once a
    module, not once a test: a full collection walks every object made since collecting (tests/conftest.py
    freezes the rest)."""
    yield
    gc.collect()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.slow)
            item.add_marker(CLIENT_SOCKETS_LEFT_TO_GC)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One gunicorn server for the whole session."""
    with ServerProcess(SERVER_ENV, workers=2) as running:
        yield running


@pytest.fixture(scope="session")
def node_clients() -> None:
    """The pinned Node clients (Claude Code, the TypeScript SDK) in tests/node, installed by the README's command."""
    ensure_installed()


@pytest.fixture
def sdk(server: ServerProcess) -> Iterator[anthropic.Anthropic]:
    """The official SDK pointed at the server; no retries, so each call is one request.

    Closed after the test: a pooled connection left open keeps a stopping worker draining until its keep-alive
    runs out (app/internals.py), seconds a stop need not take.
    """
    with anthropic.Anthropic(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=20) as client:
        yield client
