"""The journal's bounds, as a client of a running server meets them: retention, the body kept, pages in bytes."""

from __future__ import annotations

import json
import urllib.request

import anthropic

MODEL = "claude-sonnet-4-5"
ECHO = {"fallback": "echo", "rules": []}


def send(server, text: str, times: int = 1) -> None:
    client = anthropic.Anthropic(base_url=server.base_url, api_key=server.api_key, max_retries=0, timeout=30)
    with client:
        for _ in range(times):
            client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": text}])


def page(server, query: str) -> tuple[dict, int]:
    """One page of GET /_understudy/requests, and its size on the wire."""
    request = urllib.request.Request(
        f"{server.base_url}/_understudy/requests?{query}", headers={"x-understudy-admin-key": server.admin_key}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
    return json.loads(body), len(body)


def test_the_journal_keeps_the_newest_entries_within_its_limit(understudy):
    server = understudy(ECHO, workers=2, env={"UNDERSTUDY_JOURNAL_MAX_ENTRIES": "50"})
    send(server, "hello", times=120)
    ids = [entry["id"] for entry in server.journal()]
    assert 45 <= len(ids) <= 50 and ids == list(range(121 - len(ids), 121))


def test_a_page_stops_at_8_mb_and_says_where_to_read_on(understudy):
    # 300 entries of 1 MB made one answer of 312 MB, and a worker of 1.35 GB.
    server = understudy(ECHO, env={"UNDERSTUDY_JOURNAL_MAX_BODY_BYTES": str(2 * 1024 * 1024)})
    send(server, "x" * 1_000_000, times=20)
    first, size = page(server, "limit=300")
    assert 1 <= len(first["data"]) <= 8 and first["has_more"] and size < 9_000_000
    assert first["last_id"] == first["data"][-1]["id"]
    assert len(server.journal()) == 20  # read on, page by page, to the end
    last, _ = page(server, f"after={server.journal()[-2]['id']}&limit=300")
    assert len(last["data"]) == 1 and not last["has_more"]


def test_a_body_over_the_default_256_kb_keeps_its_size_and_start(understudy):
    server = understudy(ECHO)
    send(server, "y" * 300_000)
    send(server, "z" * 200_000)
    cut, whole = (entry["body"] for entry in server.journal())
    assert cut["truncated"] and cut["bytes"] > 300_000 and len(cut["start"]) == 4096
    assert whole["messages"][0]["content"] == "z" * 200_000
