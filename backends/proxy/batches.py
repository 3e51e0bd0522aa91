"""The proxy's Message Batches: every batch route forwarded to the upstream, which runs the batches.

Each call goes upstream through the client the proxy's message calls use
(upstream.py): validated here first, the upstream key in place of the client's
when the gateway holds one, hop-by-hop headers dropped, the upstream's answer
— its API errors included — passed back with the gateway's secrets masked.
The results file is streamed through as it arrives, whole lines at a time. The batch's `results_url`, which names
the upstream, is pointed back at this server by the handler, so a client
never needs the upstream or its key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote

import httpcore

from backends.batches.base import Batches, Headers
from backends.exchange import ByteStream, Reply
from backends.proxy.upstream import Upstream, query_string, upstream_errors, upstream_fault

ROUTE = "/v1/messages/batches"


class UpstreamBatches(Batches):
    """The batch routes, answered by the proxy's upstream."""

    def __init__(self, upstream: Upstream, *, max_line_bytes: int) -> None:
        self.upstream = upstream
        #: The longest result line passed on (the proxy's bound on one event).
        self.max_line_bytes = max_line_bytes

    def create(self, requests: Sequence[Mapping[str, Any]], headers: Headers) -> Reply:
        return self.upstream.call("POST", ROUTE, headers, body={"requests": list(requests)})

    def retrieve(self, batch_id: str, headers: Headers) -> Reply:
        return self.upstream.call("GET", _batch_path(batch_id), headers)

    def page(self, *, after_id: str | None, before_id: str | None, limit: int, headers: Headers) -> Reply:
        query = query_string(limit=limit, after_id=after_id, before_id=before_id)
        return self.upstream.call("GET", f"{ROUTE}?{query}", headers)

    def cancel(self, batch_id: str, headers: Headers) -> Reply:
        return self.upstream.call("POST", f"{_batch_path(batch_id)}/cancel", headers)

    def delete(self, batch_id: str, headers: Headers) -> Reply:
        return self.upstream.call("DELETE", _batch_path(batch_id), headers)

    def results(self, batch_id: str, headers: Headers) -> ByteStream:
        upstream = self.upstream
        held = ExitStack()  # the upstream response, open until its last line is passed on
        with upstream_errors(upstream.secrets):
            response = held.enter_context(upstream.stream("GET", f"{_batch_path(batch_id)}/results", headers))
        if response.status != 200:
            with held, upstream_errors(upstream.secrets):
                raise upstream.error(response, upstream.read(response, None))
        return ByteStream(self._lines(response, held), upstream.returned_headers(response.headers))

    def _lines(self, response: httpcore.Response, held: ExitStack) -> Iterator[bytes]:
        """The upstream's results as they arrive, whole lines at a time, each with the gateway's secrets masked.

        One line is one result; a line longer than the proxy's bound on one event is given up (the
        download stops short), so an upstream cannot fill the gateway's memory with an endless one.
        """
        pending: list[bytes] = []  # the start of a line whose end has not arrived
        size = 0
        try:
            with upstream_errors(self.upstream.secrets):
                for chunk in response.iter_stream():
                    complete, newline, rest = chunk.rpartition(b"\n")
                    if newline:
                        yield self._masked(b"".join([*pending, complete, newline]))
                        pending, size = [], 0
                    pending.append(rest)
                    size += len(rest)
                    if size > self.max_line_bytes:
                        raise upstream_fault(f"The upstream sent a result line longer than {self.max_line_bytes} bytes")
            if size:
                yield self._masked(b"".join(pending))
        finally:
            held.close()

    def _masked(self, lines: bytes) -> bytes:
        secrets = self.upstream.secrets
        if not secrets.values:
            return lines
        return str(secrets.redacted(lines.decode("utf-8", "replace"))).encode()


def _batch_path(batch_id: str) -> str:
    return f"{ROUTE}/{quote(batch_id, safe='')}"
