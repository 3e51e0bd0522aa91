"""A response as read off the wire, for the tests that speak raw HTTP (http.client) to a real server."""

from __future__ import annotations

import http.client
import json
from typing import Any

#: The error type the API gives each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


class Answer:
    """A response as read off the wire: status, headers (names in lower case) and body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)
