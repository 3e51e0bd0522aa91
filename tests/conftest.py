"""Fixtures shared by unit and integration tests, and what `-m "not slow"` leaves uncollected."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# pytest's own parser of `-m` expressions; not public API, but the only way to read one before collecting.
from _pytest.mark.expression import Expression

from app import create_app

from builders import API_KEY, Clock
from redis_server import RedisServer
from small_disk import mounted_tmpfs

INTEGRATION = Path(__file__).parent / "integration"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/integration uncollected when the `-m` expression deselects every slow test.

    Every test there is slow (integration/conftest.py marks them so), and collecting them is not free:
    the fuzz tests work out their thousands of coverage cases as they are collected, some 20 s of CPU.
    """
    markexpr = config.option.markexpr
    if collection_path != INTEGRATION or not markexpr:
        return None
    expression = Expression.compile(markexpr)
    # Would a test marked slow be selected, with its other marks (unknown here) matching or not?
    selectable = any(expression.evaluate(_marked_slow(others)) for others in (False, True))
    return None if selectable else True


def _marked_slow(others_match: bool) -> Callable[..., bool]:
    """A matcher for a test marked slow, whose other marks all match or all do not."""
    return lambda name, /, **_: name == "slow" or others_match


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what collecting made, so that the garbage collector stops walking it again and again.

    The collected tests live to the end of the session, the fuzz tests' generated cases among them (some
    400,000 objects): every full collection (the integration modules', pytest's own) walked them all, 0.4 s each.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", params=[True, False], ids=["internals-on", "internals-off"])
def internals(request: pytest.FixtureRequest) -> bool:
    """UNDERSTUDY_INTERNALS: the in-process suite runs with app/internals.py's hooks and without them."""
    on: bool = request.param
    return on


@pytest.fixture(scope="session")
def app(internals: bool) -> Any:
    """The whole server in-process (Connexion's middleware included), with one accepted key; built once each way."""
    return create_app({"api_keys": API_KEY, "validate_responses": True, "internals": internals})


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """Connexion's test client: drives every middleware, validation included."""
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def clock() -> Clock:
    """A clock that stands still until the test moves it (builders.Clock)."""
    return Clock()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 2 MB file system of its own (a tmpfs; skipped unless root), to fill up."""
    with mounted_tmpfs(tmp_path / "small-disk", "2m") as folder:
        yield folder


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session (each xdist worker its own); tests keep apart by key prefix."""
    with RedisServer() as running:
        yield running
