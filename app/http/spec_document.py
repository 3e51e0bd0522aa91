"""The spec as a document, at /openapi.json and /openapi.yaml: what Swagger UI (/v1/ui), Prism and code generators read.

Connexion would serve it itself, but resolved — every `$ref` copied out in
full, 1.6 MB of JSON in which Swagger UI can name no component — and with
`servers` replaced by a bare root path, which Swagger UI's servers box shows
as a blank. This serves the spec as this server loaded it (without the admin
section when the admin routes are off), references and discriminators
intact, its one server the file's (`/`, relative: the server the page came
from) under the root path the server is mounted at.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from backends.wire import ApiError

#: Where each form of the document is served, and its media type.
DOCUMENTS = {"/openapi.json": "application/json", "/openapi.yaml": "text/yaml"}


class SpecDocumentMiddleware:
    """Answers GET and HEAD of the two documents with `spec`, other methods with a 405; passes on the rest."""

    def __init__(self, app: ASGIApp, *, spec: Mapping[str, Any]) -> None:
        self.app = app
        self.spec = spec
        self._document = functools.lru_cache(maxsize=8)(self._render)  # per form and root path: a handful

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = _route_path(scope) if scope["type"] == "http" else None
        if path not in DOCUMENTS:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            raise ApiError(405, "Method Not Allowed", headers={"allow": "HEAD, GET"})  # worded by the envelope
        media_type = DOCUMENTS[path]
        body = self._document(media_type, scope.get("root_path", ""))
        headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})

    def _render(self, media_type: str, root_path: str) -> bytes:
        """The document, its servers' URLs under `root_path` (a server mounted below the root)."""
        servers = [{**server, "url": root_path.rstrip("/") + server["url"]} for server in self.spec.get("servers", [])]
        document = {**self.spec, "servers": servers}
        if media_type == "application/json":
            return json.dumps(document, ensure_ascii=False).encode()
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(document, Dumper=dumper, sort_keys=False, allow_unicode=True).encode()


def _route_path(scope: Scope) -> str:
    """The path below the root path the server is mounted at (ASGI's `path` includes `root_path`)."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path
