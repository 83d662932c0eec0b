"""The ASGI layer around every route: request ids, the optional API key, and per-request metrics.

Each request gets an id (its ``X-Request-ID`` header, else a new one) kept in ``scope["state"]`` and echoed
in the response's ``X-Request-ID``. With an API key set, ``/v1/*`` and ``/metrics`` need it as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` (compared in constant time), else 401.

Example:
    >>> is_protected("/v1/search"), is_protected("/health"), is_protected("/")
    (True, False, False)
"""

from __future__ import annotations

import hmac
import json
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match

PROTECTED_PREFIXES = ("/v1/", "/metrics")
MAX_REQUEST_ID = 200


def is_protected(path: str) -> bool:
    """Whether ``path`` needs the API key (when one is set)."""
    return path.startswith(PROTECTED_PREFIXES)


def _presented_key(headers: Headers) -> str:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("x-api-key", "")


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison of two keys.

    Example:
        >>> key_matches("s3cret", "s3cret"), key_matches("guess", "s3cret")
        (True, False)
    """
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class ServiceMiddleware:
    """Wraps the Starlette app: see the module docstring. ``routes`` name the metric's ``route`` label."""

    def __init__(self, app, *, metrics, routes, api_key: str | None = None):
        self.app, self.metrics, self.routes, self.api_key = app, metrics, routes, api_key

    def _route_name(self, scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other")
        return "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id", "")[:MAX_REQUEST_ID] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                out = MutableHeaders(scope=message)
                if "x-request-id" not in out:
                    out["X-Request-ID"] = scope["state"]["request_id"]
            await send(message)

        try:
            if self.api_key and is_protected(scope["path"]) and not key_matches(_presented_key(headers),
                                                                                self.api_key):
                await _unauthorized(send_with_id, bool(_presented_key(headers)), request_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.observe_request(self._route_name(scope), status[0], time.perf_counter() - start)


async def _unauthorized(send, given: bool, request_id: str) -> None:
    reason = "wrong API key" if given else "missing API key"
    body = json.dumps({"error": {"message": f"{reason}: send 'Authorization: Bearer <key>' (the server's "
                                            "--api-key or ANYCLIP_API_KEY)", "type": "unauthorized"},
                       "request_id": request_id}).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["ServiceMiddleware", "is_protected", "key_matches"]
