"""The doors: each platform's wire shape in, the backend contract's request out, and the answer back in its shape.

A door is a codec between one way of reaching Claude and the Messages API
the backends answer: Amazon Bedrock's InvokeModel (`bedrock`), Vertex AI's
rawPredict (`vertex`) and the OpenAI SDK compatibility endpoint (`openai`)
each have a spec of their own (doors/*.yaml, beside openapi.yaml), handlers in
app/api/doors.py and a codec here: pure functions from the door's request to a
Messages request and from a reply to the door's answer, a framing for its
streams, and its error shape. The first-party API (`anthropic.py`) is the
identity codec; Claude Platform on AWS (`aws`), on Google Cloud
(`google-cloud`), Bedrock Mantle (`mantle`) and Microsoft Foundry (`foundry`)
speak it, the last three under path prefixes that openapi.yaml's `servers`
declare (mounts.py finds the door of each request).
"""

from __future__ import annotations

from collections.abc import Callable

from app.doors import anthropic, bedrock, openai, vertex
from app.doors.base import DOOR_KEY, FIRST_PARTY, ErrorAnswer
from backends.wire import ApiError

__all__ = ["DOORS", "DOOR_KEY", "FIRST_PARTY", "ErrorAnswer", "error_answer"]

#: Every door, each with how it answers an error.
DOORS: dict[str, Callable[[ApiError, str | None], ErrorAnswer]] = {
    FIRST_PARTY: anthropic.error_answer,
    "aws": anthropic.error_answer,
    "google-cloud": anthropic.error_answer,
    "mantle": anthropic.error_answer,
    "foundry": anthropic.error_answer,
    "bedrock": bedrock.error_answer,
    "vertex": vertex.error_answer,
    "openai": openai.error_answer,
}


def error_answer(door: str | None, error: ApiError, request_id: str | None) -> ErrorAnswer:
    """`error` as the door (a name of DOORS; None for the first-party API) answers it."""
    return DOORS.get(door or FIRST_PARTY, anthropic.error_answer)(error, request_id)
