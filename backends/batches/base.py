"""The Message Batches contract: what the batch routes' handlers ask, whoever runs the batches.

Two implementations: `LocalBatches` (local.py), the server's own, kept in the
shared state file and answered in the background by the backend; and the
proxy's, which forwards every call to its upstream. Requests reach them
already validated against openapi.yaml; answers leave as `Reply` (JSON) or
`ByteStream` (the results file). A failure the API would report is an
`ApiError` (backends/wire.py): an unknown id a 404, a batch in the wrong state
for the call a 400.

`results_url` in a batch is this server's own path for the results
(`results_path`); the handler makes it a full URL from the request's host, so
the SDK, which fetches it as given, comes back here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from backends.exchange import ByteStream, Reply

Headers = Mapping[str, str]


def results_path(batch_id: str) -> str:
    """The path of a batch's results on this server."""
    return f"/v1/messages/batches/{batch_id}/results"


class Batches:
    """The batch routes, one method each; `headers` are the client's request headers, names in lower case."""

    def create(self, requests: Sequence[Mapping[str, Any]], headers: Headers) -> Reply:
        """Accept a batch of `{custom_id, params}` requests; the new MessageBatch, in_progress."""
        raise NotImplementedError

    def retrieve(self, batch_id: str, headers: Headers) -> Reply:
        """The MessageBatch as it is now."""
        raise NotImplementedError

    def page(self, *, after_id: str | None, before_id: str | None, limit: int, headers: Headers) -> Reply:
        """One page of batches, newest first: `{data, has_more, first_id, last_id}`."""
        raise NotImplementedError

    def cancel(self, batch_id: str, headers: Headers) -> Reply:
        """Ask for the batch to stop; the MessageBatch, canceling."""
        raise NotImplementedError

    def delete(self, batch_id: str, headers: Headers) -> Reply:
        """Delete an ended batch: `{id, type: message_batch_deleted}`."""
        raise NotImplementedError

    def results(self, batch_id: str, headers: Headers) -> ByteStream:
        """An ended batch's results as JSON Lines, streamed; raises before the first byte if there are none."""
        raise NotImplementedError
