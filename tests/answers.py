"""A response as read off the wire, for the tests that speak raw HTTP (http.client) to a real server."""

from __future__ import annotations

import http.client
import json
from typing import Any


class Answer:
    """A response as read off the wire: status, headers (names in lower case) and body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)
