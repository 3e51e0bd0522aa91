"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app import create_app

from builders import API_KEY


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
