"""The parsed body's way from request validation to the view: a box in the ASGI scope, emptied once it is taken.

Validation parses a body once (app/spec/validators.py, app/spec/multipart.py)
and leaves it in the scope for the view (app/internals.py, app/api/files.py),
so that nothing parses it twice. The scope is copied on its way down, and
something may hold a copy long after the answer: Connexion keeps one in a
context variable, and a context is copied into every timer and task made
under it; a cancelled timer held a 250 MB Message Batch that way until it
came due. So the body travels in a box that every copy shares, and the bridge
empties it as soon as the view has run (`release`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope

from app.http.body_limit import replay

#: Where request validation leaves the parsed body (a ParsedBody) in the ASGI scope.
PARSED_BODY_KEY = "understudy.parsed_body"


@dataclass
class ParsedBody:
    """The request's body as validation parsed it: a JSON value, or a form's fields."""

    value: Any


def hand_on(value: Any, scope: Scope, receive: Receive) -> tuple[Receive, Scope]:
    """The body, read and parsed, used up: the layers below get an empty one, and `value` in the scope for the
    view (a receive channel and scope for a Connexion validator's `wrap_receive` to return)."""
    framing = (b"content-length", b"transfer-encoding")
    headers = [(name, header) for name, header in scope["headers"] if name.lower() not in framing]
    handed_on = {**scope, "headers": [*headers, (b"content-length", b"0")], PARSED_BODY_KEY: ParsedBody(value)}
    return replay(b"", receive), handed_on


def parsed_body(scope: MutableMapping[str, Any]) -> ParsedBody | None:
    """The box validation left in the scope, if any."""
    box: ParsedBody | None = scope.get(PARSED_BODY_KEY)
    return box


def release(scope: MutableMapping[str, Any]) -> None:
    """Empty the box, for every copy of the scope: the view has what it needs."""
    box = parsed_body(scope)
    if box is not None:
        box.value = None
