"""The echo backend's model limits (from the catalogue) and its prompt-cache accounting."""

from __future__ import annotations

import pytest

from backends.catalogue import DEFAULT_FILE, ModelCatalogue
from backends.echo import EchoBackend
from backends.echo.caching import PromptCache
from backends.exchange import MessageRequest
from backends.state import SQLiteStore
from backends.wire import ApiError

from builders import Clock, message_body

CATALOGUE = ModelCatalogue.from_file(DEFAULT_FILE)


def reply(backend: EchoBackend, body: dict) -> dict:
    return backend.create_message(MessageRequest(body)).body


@pytest.mark.parametrize("model", ["claude-foo", "claude-3-haiku-20240307", "claude-sonnet-4-0"])
def test_an_unknown_or_retired_model_is_a_404_unless_any_model_is_set(model):
    with pytest.raises(ApiError) as error:
        reply(EchoBackend(CATALOGUE), message_body(model=model))
    assert (error.value.status, error.value.error_type, error.value.message) == (
        404,
        "not_found_error",
        f"model: {model}",
    )
    with pytest.raises(ApiError):
        EchoBackend(CATALOGUE).count_tokens(MessageRequest(message_body(model=model)))
    assert reply(EchoBackend(CATALOGUE, any_model=True), message_body(model=model))["model"] == model


def test_max_tokens_over_the_models_maximum_is_the_apis_400():
    with pytest.raises(ApiError) as error:
        reply(EchoBackend(CATALOGUE), message_body(model="claude-sonnet-4-5", max_tokens=64001))
    assert error.value.status == 400
    assert error.value.message == (
        "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5-20250929"
    )
    assert reply(EchoBackend(CATALOGUE, any_model=True), message_body(model="mine", max_tokens=10**9))


def test_a_prompt_over_the_context_window_is_the_apis_400_and_one_near_it_stops_at_the_window():
    backend = EchoBackend(CATALOGUE)
    with pytest.raises(ApiError) as error:
        reply(backend, message_body("w " * 200_001, model="claude-haiku-4-5"))
    assert error.value.message == "prompt is too long: 200001 tokens > 200000 maximum"
    message = reply(backend, message_body("w " * 199_997, model="claude-haiku-4-5", max_tokens=100))
    assert message["stop_reason"] == "model_context_window_exceeded" and message["usage"]["output_tokens"] == 3


def store_in(folder) -> SQLiteStore:
    return SQLiteStore(folder / "state.sqlite3", max_journal_bytes=1 << 20, max_journal_entries=100)


def cached_body(ttl: str | None = None, question: str = "What is it about?") -> dict:
    control = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return message_body(question, system=[{"type": "text", "text": "word " * 1500, "cache_control": control}])


@pytest.fixture
def cache(tmp_path) -> tuple[PromptCache, Clock]:
    clock = Clock(1_000_000.0)
    return PromptCache(store_in(tmp_path), clock), clock


def account(cache: PromptCache, body: dict, minimum: int = 1024) -> dict:
    usage = {"input_tokens": 1504, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    return cache.account(body, usage, model="claude-sonnet-4-5-20250929", min_tokens=minimum)


def test_a_breakpoint_writes_the_prefix_then_a_repeat_reads_it(cache):
    prompt_cache, _ = cache
    first = account(prompt_cache, cached_body())
    assert (first["input_tokens"], first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (
        4,
        1500,
        0,
    )
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 0}
    again = account(prompt_cache, cached_body(question="And who wrote it?"))  # the same prefix, another question
    assert (again["input_tokens"], again["cache_creation_input_tokens"], again["cache_read_input_tokens"]) == (
        4,
        0,
        1500,
    )


def test_an_entry_lives_for_its_ttl_from_its_last_use(cache):
    prompt_cache, clock = cache
    account(prompt_cache, cached_body())
    clock.now += 299
    assert account(prompt_cache, cached_body())["cache_read_input_tokens"] == 1500  # and the 5 minutes start again
    clock.now += 299
    assert account(prompt_cache, cached_body())["cache_read_input_tokens"] == 1500
    clock.now += 301
    assert account(prompt_cache, cached_body())["cache_creation_input_tokens"] == 1500
    account(prompt_cache, cached_body("1h"))
    clock.now += 3000
    assert account(prompt_cache, cached_body("1h"))["cache_read_input_tokens"] == 1500


def test_a_prefix_under_the_models_minimum_is_not_cached(cache):
    prompt_cache, _ = cache
    usage = account(prompt_cache, cached_body(), minimum=2048)
    assert usage["cache_creation_input_tokens"] == 0 and usage["input_tokens"] == 1504


def test_the_1h_and_5m_breakpoints_split_the_write(tmp_path):
    body = message_body(
        [
            {"type": "text", "text": "more " * 600, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "q"},
        ],
        system=[{"type": "text", "text": "word " * 1500, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    )
    backend = EchoBackend(CATALOGUE, store=store_in(tmp_path))
    usage = reply(backend, body)["usage"]
    assert usage["cache_creation"] == {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1500}
    assert usage["input_tokens"] == 1 and usage["cache_read_input_tokens"] == 0


def test_a_top_level_cache_control_caches_up_to_the_last_block(tmp_path):
    body = message_body("word " * 1100, cache_control={"type": "ephemeral"})
    backend = EchoBackend(CATALOGUE, store=store_in(tmp_path))
    assert reply(backend, body)["usage"]["cache_creation_input_tokens"] == 1100
    assert reply(backend, body)["usage"]["cache_read_input_tokens"] == 1100
