"""Each anthropic-version checked by its own schema (openapi.yaml's `x-by-anthropic-version`), on every route.

2026-10-21, which the 2.x SDKs send, removed the sampling parameters, document
blocks in assistant messages and citations on text blocks in user messages;
2023-06-01, which 0.x SDKs send, still takes them. The whole request path runs
in-process (Connexion's test client), as in test_api.py.
"""

from __future__ import annotations

import time

import pytest

from builders import API_KEY, message_body

OLD = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
NEW = {"authorization": f"Bearer {API_KEY}", "anthropic-version": "2026-10-21"}
DOCUMENT = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green."}}
CITATION = {
    "type": "char_location",
    "cited_text": "The grass is green.",
    "document_index": 0,
    "document_title": None,
    "start_char_index": 0,
    "end_char_index": 19,
}
CITED_TEXT = {"type": "text", "text": "The grass is green.", "citations": [CITATION]}


def conversation(*messages: dict) -> dict:
    return message_body(messages=list(messages))


ASSISTANT_DOCUMENT = conversation(
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": [DOCUMENT]},
    {"role": "user", "content": "Go on"},
)
USER_CITATIONS = conversation({"role": "user", "content": [CITED_TEXT]})
SEARCH_RESULT_CITATIONS = conversation(
    {
        "role": "user",
        "content": [{"type": "search_result", "source": "s", "title": "t", "content": [CITED_TEXT]}],
    }
)
ASSISTANT_CITATIONS = conversation(
    {"role": "user", "content": [DOCUMENT, {"type": "text", "text": "What colour is the grass?"}]},
    {"role": "assistant", "content": [CITED_TEXT]},
    {"role": "user", "content": "Thanks"},
)


@pytest.mark.parametrize("route", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (message_body(temperature=1), "temperature: Extra inputs are not permitted"),
        (message_body(top_p=0.99), "top_p: Extra inputs are not permitted"),
        (message_body(top_k=5), "top_k: Extra inputs are not permitted"),
        (ASSISTANT_DOCUMENT, "messages.1.content.0.type: Input tag 'document' does not match any of the expected tags"),
        (USER_CITATIONS, "messages.0.content.0.citations: List should have at most 0 items"),
        (SEARCH_RESULT_CITATIONS, "messages.0.content.0.content.0.citations: List should have at most 0 items"),
    ],
)
def test_2026_10_21_refuses_what_it_removed(client, route, body, message):
    if route.endswith("count_tokens"):
        body = {name: value for name, value in body.items() if name != "max_tokens"}
    refused = client.post(route, json=body, headers=NEW)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"] == message or message in refused.json()["error"]["message"]
    old_refusal = client.post(route, json=body, headers=OLD)  # count_tokens never took the sampling parameters
    assert old_refusal.status_code == (400 if route.endswith("count_tokens") and "Extra" in message else 200)


def test_2026_10_21_still_takes_citations_on_the_assistants_text(client):
    assert client.post("/v1/messages", json=ASSISTANT_CITATIONS, headers=NEW).status_code == 200


def test_a_batch_item_is_checked_by_its_batchs_version(client):
    requests = [
        {"custom_id": "sampled", "params": message_body(temperature=0.5)},
        {"custom_id": "plain", "params": message_body()},
    ]
    created = client.post("/v1/messages/batches", json={"requests": requests}, headers=NEW)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    for _ in range(200):
        batch = client.get(f"/v1/messages/batches/{batch_id}", headers=NEW).json()
        if batch["processing_status"] == "ended":
            break
        time.sleep(0.05)
    assert batch["request_counts"] == {"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0}


def test_a_system_message_without_content_is_taken(client):
    # The fuzz run found this a 500: the files' resolution read every message's content.
    body = conversation(
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "system", "output_config": None, "clear_at": "next_user_message"},
    )
    response = client.post("/v1/messages", json={**body, "model": "claude-opus-4-8"}, headers=OLD)
    assert response.status_code == 200, response.text
