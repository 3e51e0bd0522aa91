"""Each model answers as its catalogue entry says, through the whole request path (Connexion's test client).

Its tokenizer family counts count_tokens and usage alike; its defaults decide
whether a request that says nothing of thinking gets a thinking block first.
"""

from __future__ import annotations

import pytest

from builders import API_KEY

HEADERS = {"authorization": f"Bearer {API_KEY}", "anthropic-version": "2026-10-21"}
PROSE = "Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex."


def ask(client, route: str, model: str, **fields):
    body = {"model": model, "messages": [{"role": "user", "content": PROSE}], **fields}
    response = client.post(route, json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("newer", "classic"), [("claude-opus-4-7", "claude-opus-4-6")])
def test_the_newer_tokenizer_counts_more_and_count_tokens_agrees_with_usage(client, newer, classic):
    counted = {model: ask(client, "/v1/messages/count_tokens", model)["input_tokens"] for model in (newer, classic)}
    used = {model: ask(client, "/v1/messages", model, max_tokens=100)["usage"] for model in (newer, classic)}
    assert counted[newer] > counted[classic] * 1.2
    for model in (newer, classic):
        assert used[model]["input_tokens"] == counted[model]
    # The reply echoes the prompt: its output tokens are counted by the same family.
    assert used[newer]["output_tokens"] == counted[newer] and used[classic]["output_tokens"] == counted[classic]


def test_max_tokens_cuts_by_the_models_own_tokens(client):
    reply = ask(client, "/v1/messages", "claude-opus-4-7", max_tokens=1)  # Beaut|iful
    assert reply["content"] == [{"type": "text", "text": "Beaut"}] and reply["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("model", "first"),
    [("claude-opus-5-5", "thinking"), ("claude-sonnet-5-5", "thinking"), ("claude-opus-4-8", "text")],
)
def test_a_request_that_says_nothing_of_thinking_gets_the_models_default(client, model, first):
    reply = ask(client, "/v1/messages", model, max_tokens=500)
    assert reply["content"][0]["type"] == first
    if first == "thinking":
        assert reply["content"][0]["thinking"] == "" and reply["content"][0]["signature"]
        assert reply["usage"]["output_tokens_details"]["thinking_tokens"] > 0
        assert reply["content"][1] == {"type": "text", "text": PROSE}
