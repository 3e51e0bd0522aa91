"""This server's own base URL, for the URLs it hands out (a Message Batch's `results_url`).

The SDKs fetch `results_url` exactly as given, so it must name this server as
its clients reach it, and never a host a client merely claimed:
- UNDERSTUDY_PUBLIC_URL, when set (behind a proxy, a port mapping, TLS);
- else the request's scheme and its Host header, when the Host is well
  formed and names this machine: `localhost`, a loopback address, the
  machine's host name, or the address the connection came in on;
- else that address itself (the socket's own, never a name from the request).
"""

from __future__ import annotations

import ipaddress
import re
import socket

from flask import request

from backends.wire import SETTINGS_KEY

#: A Host header: a name or IPv4 address, or an IPv6 address in brackets, and an optional port.
HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?")


def own_base_url() -> str:
    """The URL this server's paths are joined to, without a trailing slash (module docstring)."""
    scope = request.environ["asgi.scope"]
    configured: str | None = scope[SETTINGS_KEY].public_url
    if configured is not None:
        return configured
    scheme = scope.get("scheme", "http")
    server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
    host = request.headers.get("host", "")
    matched = HOST.fullmatch(host)
    if matched is not None and _names_this_machine(matched["name"].strip("[]"), server_host):
        return f"{scheme}://{host.lower()}"
    address = f"[{server_host}]" if ":" in server_host else server_host
    return f"{scheme}://{address}:{server_port}"


def _names_this_machine(name: str, server_host: str) -> bool:
    name = name.lower().rstrip(".")
    if name in ("localhost", server_host.lower(), socket.gethostname().lower()):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
