"""The echo backend, Understudy's default: deterministic replies that keep the Messages API's semantics.

One module a job:
- `reply.py` — the Message a request gets: the echo text, thinking, structured output, stop rules;
- `tools.py` — which tool tool_choice calls, and a client tool's input;
- `server_tools.py` — server tool calls (web search and fetch, code execution, tool search) and results;
- `citations.py` — quotes of citable documents, with their citations;
- `limits.py` — the model's limits: unknown and retired models, max_tokens, the context window;
- `caching.py` — prompt-cache reads and writes in usage, kept in the shared state store.
"""

from __future__ import annotations

from backends.base import Backend
from backends.catalogue import UNLISTED_MODEL, ModelCatalogue
from backends.echo import limits
from backends.echo.caching import PromptCache
from backends.echo.reply import echo_message, signature_for, usage
from backends.exchange import MessageRequest, Reply
from backends.state import StateStore

__all__ = ["EchoBackend", "echo_message", "signature_for", "usage"]


class EchoBackend(Backend):
    """Replies by echoing, as the catalogue's models; with a store, prompt caching is accounted for."""

    name = "echo"
    answers_in_memory = True  # its prompt cache in a SQLite store: a local file, written in microseconds

    def __init__(self, catalogue: ModelCatalogue, *, any_model: bool = False, store: StateStore | None = None) -> None:
        super().__init__(catalogue)
        self.any_model = any_model
        self.cache = PromptCache(store) if store is not None else None

    def create_message(self, request: MessageRequest) -> Reply:
        body = request.body
        model = limits.model_for(self.catalogue, body["model"], any_model=self.any_model) or UNLISTED_MODEL
        input_tokens = model.tokenizer.count_input(body)
        window_room = limits.window_room(model, body, input_tokens)
        message = echo_message(body, window_room=window_room, input_tokens=input_tokens, model=model)
        if self.cache is not None:
            message["usage"] = self.cache.account(
                body,
                message["usage"],
                model=model.id or body["model"],
                min_tokens=model.min_cache_tokens,
                tokenizer=model.tokenizer,
            )
        return Reply(message)

    def count_tokens(self, request: MessageRequest) -> Reply:
        limits.model_for(self.catalogue, request.body["model"], any_model=self.any_model)
        return super().count_tokens(request)
