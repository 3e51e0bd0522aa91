"""Key checks for the security schemes openapi.yaml declares: x-api-key, Bearer, AWS Signature Version 4, and the
admin key (in its header, or as HTTP Basic's password).

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

from connexion.security import NO_VALUE

from app.doors.base import DOOR_KEY
from app.http.sigv4 import SIGV4, is_signed
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


def check_admin_basic(username: str, password: str, required_scopes: Any = None, request: Any = None) -> dict[str, str]:
    """x-basicInfoFunc for the admin routes a browser or Prometheus calls: the admin key as the password (any user)."""
    return check_admin_key(password, request=request)


#: The AWS service each door's signatures are made for.
SIGNING_SERVICES = {"bedrock": "bedrock", "mantle": "bedrock-mantle", "aws": "aws-external-anthropic"}


def check_sigv4(value: str, required_scopes: Any = None, request: Any = None) -> Any:
    """x-apikeyInfoFunc for AwsSigV4Auth: an `Authorization` header signed as AWS signs (Bedrock's, Bedrock Mantle's
    and Claude Platform on AWS's clients), well formed and dated by `x-amz-date`. Its access key is one of
    UNDERSTUDY_AWS_CREDENTIALS, whose signatures app/http/sigv4.py verifies, when they are set; else it is a key
    as any other (UNDERSTUDY_API_KEYS). Any other scheme is not this one's to judge (BearerAuth's, say)."""
    if not is_signed(value):
        return NO_VALUE
    signed = SIGV4.fullmatch(value)
    if signed is None or "x-amz-date" not in request.headers:
        raise ApiError(401, "The AWS signature is malformed: Authorization and X-Amz-Date must be as SigV4 makes them")
    # As every AWS endpoint, a door takes only a signature made for its own service (Bedrock's client, say, signs
    # its stray count_tokens call for `bedrock`, which Claude Platform on AWS's endpoint does not serve).
    service = SIGNING_SERVICES.get(request.scope.get(DOOR_KEY))
    if signed["service"] != service:
        raise ApiError(403, f"Credential should be scoped to correct service: '{service or 'none: no AWS signature'}'.")
    if request.scope[SETTINGS_KEY].aws_credentials:
        return {"sub": signed["key"]}  # verified, signature and all, before the body reached validation
    return _check(signed["key"], request)
