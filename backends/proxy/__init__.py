"""The proxy backend: a gateway to the real API, with record mode.

`backend` forwards each call upstream (keys held, streams unbuffered, faults
mapped to API errors); `recording` turns the exchanges into a script the
scripted backend replays.
"""

from backends.proxy.backend import ProxyBackend

__all__ = ["ProxyBackend"]
