"""Key checks for the two security schemes openapi.yaml declares: x-api-key and Bearer.

Connexion finds the key in the header the scheme names and calls the function
the spec points at (`x-apikeyInfoFunc`, `x-bearerInfoFunc`). With
UNDERSTUDY_API_KEYS set only those keys pass, compared in constant time;
unset, any non-empty key passes. A key that does not pass is a 401
authentication_error; no key at all is reported by Connexion and worded by
`app.spec.problems`.
"""

from __future__ import annotations

import hmac
from typing import Any

from backends.wire import ADMIN_KEY_HEADER, SETTINGS_KEY, ApiError


def key_is_accepted(key: str, accepted: frozenset[str]) -> bool:
    """Whether `key` passes: any non-empty key when no keys are configured, else one of them."""
    if not key:
        return False
    if not accepted:
        return True
    candidate = key.encode()
    # Compare against every key, without stopping early, so timing says nothing about which came close.
    matches = [hmac.compare_digest(candidate, known.encode()) for known in accepted]
    return any(matches)


def _check(key: str, request: Any) -> dict[str, str]:
    if not key_is_accepted(key, request.scope[SETTINGS_KEY].api_keys):
        raise ApiError(401, "invalid x-api-key")
    return {"sub": "client"}


def check_api_key(key: str, required_scopes: Any = None, request: Any = None) -> dict[str, str]:
    """x-apikeyInfoFunc: the key from the `x-api-key` header."""
    return _check(key, request)


def check_bearer_token(token: str, request: Any = None) -> dict[str, str]:
    """x-bearerInfoFunc: the key from `Authorization: Bearer KEY`."""
    return _check(token, request)


def check_admin_key(key: str, required_scopes: Any = None, request: Any = None) -> dict[str, str]:
    """x-apikeyInfoFunc for the admin routes: the `x-understudy-admin-key` header."""
    admin_key = request.scope[SETTINGS_KEY].admin_key
    if not admin_key or not hmac.compare_digest(key.encode(), admin_key.encode()):
        raise ApiError(401, f"invalid {ADMIN_KEY_HEADER}")
    return {"sub": "admin"}
