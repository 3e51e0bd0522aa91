"""The backend contract: what a handler may ask of a backend (the data that crosses it is in exchange.py).

A backend answers four questions — create a message (whole or as a stream of
events), count a request's input tokens, list the models, get one model — and
never sees HTTP, Flask or Connexion. Message Batches are answered with
`create_message`, one request at a time, unless the backend runs them itself
(`own_batches`). Requests reach it already validated
against openapi.yaml; replies leave it as plain JSON-ready dicts. A backend
reports a failure the API would report by raising `ApiError` (backends/wire.py).

A simple backend writes `create_message` and `count_tokens`; streaming then
comes for free from `events_from_message`, and the models routes from the
catalogue. A backend that has real events of its own (the proxy, a scripted
stream with timing) overrides `stream_message`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from backends import tokens
from backends.events import events_from_message
from backends.exchange import EventStream, MessageRequest, Reply
from backends.tokens import Tokenizer

if TYPE_CHECKING:
    from backends.batches import Batches
    from backends.catalogue import ModelCatalogue


class Backend:
    """The interface handlers delegate to. Subclasses implement the two abstract methods."""

    #: The name the registry knows this backend by.
    name = "base"
    #: Whether its answers are computed in memory, never waiting on a network, a timer or another process: then the
    #: server may run the views that ask it on its event loop's thread, with no hop to a pool thread and back.
    answers_in_memory = False

    def __init__(self, catalogue: ModelCatalogue) -> None:
        self.catalogue = catalogue

    def create_message(self, request: MessageRequest) -> Reply:
        """Answer with a whole Message."""
        raise NotImplementedError

    def stream_message(self, request: MessageRequest) -> EventStream:
        """Answer with the events of a streamed Message; by default, those of the whole message."""
        reply = self.create_message(request)
        return EventStream(events_from_message(reply.body), reply.headers)

    def count_tokens(self, request: MessageRequest) -> Reply:
        """Answer with `{"input_tokens": N}` by the token rule of the model's tokenizer family."""
        return Reply({"input_tokens": self.tokenizer(request.body["model"]).count_input(request.body)})

    def tokenizer(self, model: str) -> Tokenizer:
        """The tokenizer family of the model `model` names (the classic one for a model the catalogue lacks)."""
        found = self.catalogue.find(model)
        return found.tokenizer if found is not None else tokens.CLASSIC

    def list_models(
        self,
        *,
        after_id: str | None,
        before_id: str | None,
        limit: int,
        lifecycle: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One page of the models in `lifecycle` (active and deprecated when None); `headers` are the client's."""
        return Reply(self.catalogue.page(after_id=after_id, before_id=before_id, limit=limit, lifecycle=lifecycle))

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        """One model of the catalogue by id or alias, or a 404 not_found_error."""
        return Reply(self.catalogue.get(model_id))

    def own_batches(self) -> Batches | None:
        """The backend's own Message Batches, if it runs them itself (the proxy's upstream does).

        None, the default, has the server run them (backends/batches/): each request of a batch is
        answered in the background by this backend's `create_message`.
        """
        return None

    def close(self) -> None:
        """Release what the backend holds (connections, files)."""


class BackendInFront(Backend):
    """A backend in front of another, `backend`: every call passed on to it, as a subclass does not change it.

    The rate limiter (app/ratelimits/guards.py) and the facts' noting (app/observing/backend.py) stand in front
    of the configured backend so; what else the backend has (the proxy's upstream, say) is reached as it has it.
    """

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend.catalogue)
        self.backend = backend
        self.name = backend.name
        self.answers_in_memory = backend.answers_in_memory

    def create_message(self, request: MessageRequest) -> Reply:
        return self.backend.create_message(request)

    def stream_message(self, request: MessageRequest) -> EventStream:
        return self.backend.stream_message(request)

    def count_tokens(self, request: MessageRequest) -> Reply:
        return self.backend.count_tokens(request)

    def tokenizer(self, model: str) -> Tokenizer:
        return self.backend.tokenizer(model)

    def list_models(
        self,
        *,
        after_id: str | None,
        before_id: str | None,
        limit: int,
        lifecycle: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return self.backend.list_models(
            after_id=after_id, before_id=before_id, limit=limit, lifecycle=lifecycle, headers=headers
        )

    def get_model(self, model_id: str, headers: Mapping[str, str] | None = None) -> Reply:
        return self.backend.get_model(model_id, headers)

    def own_batches(self) -> Batches | None:
        return self.backend.own_batches()

    def close(self) -> None:
        self.backend.close()

    def __getattr__(self, name: str) -> Any:
        if "backend" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["backend"], name)
