"""Backends: interchangeable implementations of the interface in `base.py`, chosen by name.

The registry maps a short name to the class's dotted path; a backend's module
is imported only when it is chosen, so a backend's dependencies cost nothing
to servers that do not use it. A new backend is one module and one line here.
"""

from __future__ import annotations

from importlib import import_module

from backends.base import Backend
from backends.exchange import EventStream, MessageRequest, Reply
from backends.wire import ApiError

REGISTRY: dict[str, str] = {
    "echo": "backends.echo:EchoBackend",
    "scripted": "backends.scripted:ScriptedBackend",
    "proxy": "backends.proxy:ProxyBackend",
}

__all__ = ["REGISTRY", "ApiError", "Backend", "EventStream", "MessageRequest", "Reply", "backend_class"]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as `name`; an unknown name is a ValueError listing the known ones."""
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        raise ValueError(f"unknown backend '{name}'; known backends: {', '.join(sorted(REGISTRY))}") from None
    backend: type[Backend] = getattr(import_module(module_name), class_name)
    return backend
