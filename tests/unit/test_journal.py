"""The journal's view of a request: secrets masked, bodies kept readable and bounded."""

import json

from app import create_app
from app.http.journal import CUT_BODY_START, body_for_journal, masked_headers

from builders import HEADERS, message_body


def test_secrets_are_masked():
    headers = masked_headers(
        [
            (b"x-api-key", b"sk-secret"),
            (b"Authorization", b"Bearer sk-secret"),
            (b"x-understudy-admin-key", b"admin-secret"),
            (b"x-test-id", b"a"),
            (b"x-test-id", b"b"),
        ]
    )
    assert headers == {
        "x-api-key": "[masked]",
        "authorization": "[masked]",
        "x-understudy-admin-key": "[masked]",
        "x-test-id": "a,b",
    }


def test_bodies():
    assert body_for_journal(b'{"a": 1}', 8) == {"a": 1}
    assert body_for_journal(b"not json", 8) == "not json"
    assert body_for_journal(b"", 0) is None
    cut = body_for_journal(b"x" * 10_000, 10_010)
    assert cut == {"truncated": True, "bytes": 10_010, "start": "x" * CUT_BODY_START}


def test_an_entry_keeps_a_body_up_to_the_setting_and_the_size_and_start_of_a_longer_one(tmp_path, internals):
    settings = {"journal": True, "admin_key": "admin", "state_file": tmp_path / "s.sqlite3", "internals": internals}
    app = create_app({**settings, "journal_max_body_bytes": 2000})
    with app.test_client() as client:
        short, long = message_body("a" * 1000), message_body("b" * 5000)
        for body in (short, long):
            assert client.post("/v1/messages", json=body, headers=HEADERS).status_code == 200
        entries = client.get("/_understudy/requests", headers={"x-understudy-admin-key": "admin"}).json()["data"]
    assert entries[0]["body"] == short
    assert entries[1]["body"]["truncated"] and entries[1]["body"]["bytes"] > 5000
    assert entries[1]["body"]["start"] == json.dumps(long, separators=(",", ":"))[:2000]  # what was kept, under 4 KB
