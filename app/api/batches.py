"""The Message Batches routes: /v1/messages/batches and the routes of one batch.

Whoever runs the batches (the server itself, or the proxy's upstream) answers
through the `Batches` contract (backends/batches/base.py). Here a batch's
`results_url` becomes a full URL of this server (own_url.py), since the SDK
fetches it exactly as given: results always come back through this server,
never from wherever the batches run.
"""

from __future__ import annotations

from typing import Any

from flask import Response

from app.api import batches, request_headers
from app.api.own_url import own_base_url
from app.api.responses import json_response
from app.spec import cross_field
from backends.batches import results_path
from backends.exchange import Reply
from backends.wire import JSON


def create(body: dict[str, Any]) -> Response:
    """Accept a batch; it is answered in the background."""
    cross_field.check_batch(body)
    return _batch_response(batches().create(body["requests"], request_headers()))


def list_batches(limit: int = 20, after_id: str | None = None, before_id: str | None = None) -> Response:
    """One page of batches, newest first."""
    page = batches().page(after_id=after_id, before_id=before_id, limit=limit, headers=request_headers())
    data = [_with_own_results_url(batch) for batch in page.body["data"]]
    return json_response(Reply({**page.body, "data": data}, page.headers))


def retrieve(message_batch_id: str) -> Response:
    """One batch as it is now."""
    return _batch_response(batches().retrieve(message_batch_id, request_headers()))


def cancel(message_batch_id: str) -> Response:
    """Ask for a batch to stop."""
    return _batch_response(batches().cancel(message_batch_id, request_headers()))


def delete(message_batch_id: str) -> Response:
    """Delete an ended batch."""
    return json_response(batches().delete(message_batch_id, request_headers()))


def results(message_batch_id: str) -> Response:
    """An ended batch's results, streamed as JSON Lines."""
    stream = batches().results(message_batch_id, request_headers())
    return Response(stream.chunks, status=200, content_type="application/x-jsonl", headers=dict(stream.headers))


def _batch_response(reply: Reply) -> Response:
    return json_response(Reply(_with_own_results_url(reply.body), reply.headers))


def _with_own_results_url(batch: JSON) -> JSON:
    """The batch with its results_url, when it has one, pointing at this server."""
    if not batch.get("results_url"):
        return batch
    return {**batch, "results_url": own_base_url() + results_path(batch["id"])}
