"""The journal's view of a request: secrets masked, bodies kept readable and bounded."""

from app.http.journal import MAX_BODY_BYTES, body_for_journal, masked_headers


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
    cut = body_for_journal(b"x" * MAX_BODY_BYTES, MAX_BODY_BYTES + 10)
    assert cut["truncated"] and cut["bytes"] == MAX_BODY_BYTES + 10
