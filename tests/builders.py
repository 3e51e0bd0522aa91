"""Small builders and constants the tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.state import SQLiteStore

#: The checkout: where gunicorn.conf.py, wsgi.py and bench/ are.
REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key"
#: The headers a 0.x SDK sends.
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


def message_body(text: str = "Hello, Claude", **fields: Any) -> dict[str, Any]:
    """A small valid create-message body; keyword arguments add or replace fields."""
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}], **fields}


def weather_tool(**fields: Any) -> dict[str, Any]:
    """A custom tool with a small input schema."""
    return {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
        },
        **fields,
    }


def state_store(path: str | Path, **options: Any) -> SQLiteStore:
    """A SQLite state store whose journal limits are out of the way, unless `options` set them."""
    limits = {"max_journal_bytes": 1 << 40, "max_journal_entries": 1 << 40, "reserve_bytes": 64 * 1024}
    return SQLiteStore(Path(path), **{**limits, **options})
