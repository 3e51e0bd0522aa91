"""The bare-Flask baseline: the same echo as Understudy's, with nothing around it.

It parses the JSON body, builds the same reply shape (a Message with one text
block holding the last user message, the model echoed, usage by the same
token rule) and answers with compact JSON — but with no spec, no validation,
no auth and no middleware. It is what the benchmark measures Understudy's
overhead against; run it as `gunicorn baseline:app` from this folder (the
benchmark passes the worker class and count).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Flask, Response, json, request

app = Flask(__name__)
app.json.compact = True  # type: ignore[attr-defined]  # jsonify without spaces, as the API writes JSON
app.json.ensure_ascii = False  # type: ignore[attr-defined]
app.json.sort_keys = False  # type: ignore[attr-defined]

TOKEN = re.compile(r"\w+|[^\w\s]")


@app.post("/v1/messages")
def create() -> Response:
    body: dict[str, Any] = request.get_json()
    content = body["messages"][-1]["content"]
    text = content if isinstance(content, str) else "\n".join(block.get("text", "") for block in content)
    tokens = sum(1 for _ in TOKEN.finditer(text))
    return json.jsonify(
        {
            "id": f"msg_01{secrets.token_hex(11)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": tokens,
                "service_tier": "standard",
            },
        }
    )


@app.get("/health")
def health() -> Response:
    return json.jsonify({"status": "ok"})
