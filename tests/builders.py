"""Small builders and constants the tests share."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from backends.state import SQLiteStore

#: The checkout: where gunicorn.conf.py, wsgi.py and bench/ are.
REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key"
#: The headers a 0.x SDK sends.
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
#: How long a test waits for a batch to end before it gives up (a hang guard, not a timing check).
PATIENCE_SECONDS = 120


class Clock:
    """A clock (Unix seconds) that stands still until a test moves it: `clock.now += 60`."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def upstream_env(key: str, admin_key: str) -> dict[str, str]:
    """The settings of an echo Understudy standing in for the real API behind a proxy: it takes only the proxy's
    key, and journals what reaches it."""
    return {"UNDERSTUDY_API_KEYS": key, "UNDERSTUDY_JOURNAL": "true", "UNDERSTUDY_ADMIN_KEY": admin_key}


def gateway_env(upstream_url: str, upstream_key: str, client_key: str, **extra: str) -> dict[str, str]:
    """The settings of a proxy to `upstream_url` that holds `upstream_key` and takes `client_key` from its clients."""
    return {
        "UNDERSTUDY_BACKEND": "proxy",
        "UNDERSTUDY_UPSTREAM_URL": upstream_url,
        "UNDERSTUDY_UPSTREAM_API_KEY": upstream_key,
        "UNDERSTUDY_API_KEYS": client_key,
        **extra,
    }


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


def ended(client: Any, batch_id: str) -> Any:
    """Poll until the Message Batch has ended (`client` an official SDK client); the batch then."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not end within {PATIENCE_SECONDS} s")


def start_up(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`gunicorn wsgi:app` in the checkout with only `environment` (and a PATH), run until it exits: for settings
    that must stop start-up (its stderr's last line says why)."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "wsgi:app", "--bind", "127.0.0.1:0"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )
