"""What every door's codec gives: an error as its platform answers one, and the framing of its streams."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.wire import ApiError

#: Where the door a request came in by is noted, in the ASGI scope (mounts.py): a name of DOORS (__init__.py).
DOOR_KEY = "understudy.door"
#: Where mounts.py keeps the raw path a request was sent to when it routes it as another (what a signature signs).
SENT_PATH_KEY = "understudy.sent_raw_path"
#: The first-party API's door, which Claude Platform on AWS and on Google Cloud, Bedrock Mantle and Foundry
#: speak too.
FIRST_PARTY = "anthropic"


@dataclass(frozen=True)
class ErrorAnswer:
    """An error response as a door sends it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class Framing(Protocol):
    """How a door frames a stream: made once per stream, it turns each event of the Messages stream into bytes.

    `event` may return b"" for an event the door does not send; each call's bytes are one whole frame or
    more, sent as one piece.
    """

    content_type: str
    headers: Mapping[str, str]

    def event(self, event: Mapping[str, Any]) -> bytes: ...

    def error(self, error: ApiError, request_id: str | None) -> bytes: ...

    def end(self) -> bytes: ...
