"""AWS Signature Version 4: its `Authorization` header read and (with UNDERSTUDY_AWS_CREDENTIALS) its signature checked.

Bedrock's, Bedrock Mantle's and Claude Platform on AWS's clients sign each
request with an AWS secret (botocore's SigV4Auth, Smithy's SignatureV4). The
key check (app/api/auth.py) reads the header's form; this layer, when
credentials are configured, makes the signature again from the request as it
arrived (method, path, query, the headers signed, the body's SHA-256) and the
secret its access key names, and refuses a request whose signature differs,
whose key it does not know, or whose date is more than 15 minutes off. A body's
hash is taken as the body streams past, and the verdict given when its last
piece arrives, before the handler sees it; a request without a body is judged
at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from collections.abc import Mapping
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.doors.base import SENT_PATH_KEY
from backends.wire import ApiError

#: An `Authorization` header signed by SigV4: the credential's scope, the headers signed, the signature.
SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/\s,]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
SCHEME = b"aws4-hmac-sha256 "
#: How far a request's `x-amz-date` may be from now, as AWS allows.
MAX_SKEW_SECONDS = 15 * 60
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def is_signed(authorization: str | bytes) -> bool:
    """Whether an `Authorization` value claims to be a SigV4 signature (well formed or not)."""
    value = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    return value[: len(SCHEME)].lower() == SCHEME


class SignatureMiddleware:
    """Refuses a SigV4-signed request whose signature is not the one its secret makes (a 401 in the door's shape)."""

    def __init__(self, app: ASGIApp, *, credentials: Mapping[str, str]) -> None:
        self.app = app
        self.credentials = dict(credentials)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope) if scope["type"] == "http" and self.credentials else {}
        authorization = headers.get("authorization", "")
        signed = SIGV4.fullmatch(authorization) if is_signed(authorization) else None
        if signed is None:  # not signed, or malformed: the key check answers that
            await self.app(scope, receive, send)
            return
        secret = self.credentials.get(signed["key"])
        if secret is None:
            raise ApiError(401, "The security token included in the request is invalid.")
        _check_date(headers.get("x-amz-date", ""))
        check = _Check(scope, headers, signed, secret)
        if not _has_body(headers):
            check.verdict(hashlib.sha256().hexdigest())
            await self.app(scope, receive, send)
            return
        digest = hashlib.sha256()

        async def hashing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
                if not message.get("more_body", False):
                    check.verdict(digest.hexdigest())
            return message

        await self.app(scope, hashing_receive, send)


class _Check:
    """One request's signature, made again once its body's hash is known."""

    def __init__(self, scope: Scope, headers: Mapping[str, str], signed: re.Match[str], secret: str) -> None:
        self.scope, self.headers, self.signed, self.secret = scope, headers, signed, secret

    def verdict(self, body_hash: str) -> None:
        """Raise the 401 of a signature that is not the one the request and its secret make (`body_hash`: the
        SHA-256 of its body, in hex)."""
        claimed = self.headers.get("x-amz-content-sha256")
        payload = claimed if claimed == UNSIGNED_PAYLOAD else body_hash
        if claimed is not None and claimed not in (payload, UNSIGNED_PAYLOAD):
            raise ApiError(401, "The provided x-amz-content-sha256 header does not match what was computed.")
        expected = signature(self.scope, self.headers, self.signed, self.secret, payload)
        if not hmac.compare_digest(expected, self.signed["signature"]):
            raise ApiError(
                401,
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )


def signature(scope: Scope, headers: Mapping[str, str], signed: re.Match[str], secret: str, payload: str) -> str:
    """The SigV4 signature of the request as it arrived, by `secret`, its payload hashed as `payload`."""
    names = signed["signed"].split(";")
    raw_path = scope.get(SENT_PATH_KEY) or scope.get("raw_path") or scope["path"].encode()
    canonical = "\n".join(
        [
            scope["method"],
            quote(raw_path.decode("latin-1"), safe="/~") or "/",
            _canonical_query(scope.get("query_string", b"").decode("latin-1")),
            "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in names),
            signed["signed"],
            payload,
        ]
    )
    scope_text = f"{signed['date']}/{signed['region']}/{signed['service']}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", headers.get("x-amz-date", ""), scope_text, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = f"AWS4{secret}".encode()
    for part in (signed["date"], signed["region"], signed["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _canonical_query(query: str) -> str:
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&") if pair)
    return "&".join(f"{name}={value}" for name, value in pairs)


def _check_date(amz_date: str) -> None:
    try:
        signed_at = timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise ApiError(401, "X-Amz-Date must be a date as SigV4 writes it (20261207T120000Z)") from None
    if abs(time.time() - signed_at) > MAX_SKEW_SECONDS:
        raise ApiError(401, "Signature expired: the request's X-Amz-Date is more than 15 minutes from now.")


def _has_body(headers: Mapping[str, str]) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, a repeated one's values joined by commas (as SigV4 signs them)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        found[key] = f"{found[key]},{text}" if key in found else text
    return found
