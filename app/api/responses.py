"""Backend replies as Flask responses: compact JSON, as the real API sends it."""

from __future__ import annotations

from flask import Response

from backends.exchange import Reply
from backends.wire import compact_json


def json_response(reply: Reply, status: int = 200) -> Response:
    """A reply's body as compact JSON, with the reply's headers."""
    return Response(compact_json(reply.body), status=status, mimetype="application/json", headers=dict(reply.headers))
