"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app import create_app

from builders import API_KEY


@pytest.fixture(scope="session")
def app() -> Any:
    """The whole server in-process (Connexion's middleware included), with one accepted key; built once."""
    return create_app({"api_keys": API_KEY, "validate_responses": True})


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    """Connexion's test client: drives every middleware, validation included."""
    with app.test_client() as test_client:
        yield test_client
