"""The proxy's Message Batches: every batch route forwarded to the upstream, which runs the batches.

Each call goes upstream as the proxy's message calls do (backends/proxy/
backend.py): validated here first, the upstream key in place of the client's
when the gateway holds one, hop-by-hop headers dropped, the upstream's answer
— errors included — passed back unchanged. The results file is streamed
through chunk by chunk as it arrives. The batch's `results_url`, which names
the upstream, is pointed back at this server by the handler, so a client
never needs the upstream or its key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpcore

from backends.base import ByteStream, Reply
from backends.batches.base import Batches, Headers
from backends.proxy.backend import _returned_headers, _upstream_error, upstream_errors

if TYPE_CHECKING:
    from backends.proxy.backend import ProxyBackend

ROUTE = "/v1/messages/batches"


class UpstreamBatches(Batches):
    """The batch routes, answered by the proxy's upstream."""

    def __init__(self, proxy: ProxyBackend) -> None:
        self.proxy = proxy

    def create(self, requests: Sequence[Mapping[str, Any]], headers: Headers) -> Reply:
        return self.proxy._call("POST", ROUTE, headers, body={"requests": list(requests)})

    def retrieve(self, batch_id: str, headers: Headers) -> Reply:
        return self.proxy._call("GET", _batch_path(batch_id), headers)

    def page(self, *, after_id: str | None, before_id: str | None, limit: int, headers: Headers) -> Reply:
        query = {"limit": limit, "after_id": after_id, "before_id": before_id}
        params = urlencode({name: value for name, value in query.items() if value is not None})
        return self.proxy._call("GET", f"{ROUTE}?{params}", headers)

    def cancel(self, batch_id: str, headers: Headers) -> Reply:
        return self.proxy._call("POST", f"{_batch_path(batch_id)}/cancel", headers)

    def delete(self, batch_id: str, headers: Headers) -> Reply:
        return self.proxy._call("DELETE", _batch_path(batch_id), headers)

    def results(self, batch_id: str, headers: Headers) -> ByteStream:
        held = ExitStack()  # the upstream response, open until its last chunk is passed on
        with upstream_errors():
            response = held.enter_context(
                self.proxy.pool.stream(
                    "GET",
                    self.proxy._url(f"{_batch_path(batch_id)}/results"),
                    headers=self.proxy._headers(headers),
                    extensions=self.proxy.extensions,
                )
            )
        if response.status != 200:
            with held, upstream_errors():
                response.read()
            raise _upstream_error(response)
        return ByteStream(_chunks(response, held), _returned_headers(response.headers))


def _batch_path(batch_id: str) -> str:
    return f"{ROUTE}/{quote(batch_id, safe='')}"


def _chunks(response: httpcore.Response, held: ExitStack) -> Iterator[bytes]:
    """The upstream's body as it arrives; the upstream response is closed when it ends or the client leaves."""
    try:
        with upstream_errors():
            yield from response.iter_stream()
    finally:
        held.close()
