"""Request bodies checked at the edge: JSON within a size limit, base64 data-URI images, texts, labels.

Every problem a client can cause raises :class:`ApiError` with the HTTP status and one line naming the
field and what to send instead.

Example:
    >>> decode_data_uri("data:image/png;base64,aGVsbG8=", "input[0]")
    b'hello'
    >>> is_data_uri("a red square")
    False
"""

from __future__ import annotations

import base64
import binascii
import json
import re

_DATA_URI = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)?(;[A-Za-z0-9=._-]+)*;base64,", re.ASCII)


class ApiError(Exception):
    """An answer other than 200: ``status``, a one-line ``message`` and optional response ``headers``."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def is_data_uri(value: str) -> bool:
    """Whether ``value`` is a base64 ``data:`` URI (an image), not a text."""
    return isinstance(value, str) and value.startswith("data:")


def decode_data_uri(value: str, field: str) -> bytes:
    """The bytes of ``data:image/...;base64,...``; an ApiError 400 naming ``field`` otherwise."""
    match = _DATA_URI.match(value) if isinstance(value, str) else None
    if match is None:
        raise ApiError(400, f"{field}: not a base64 data URI; send data:image/png;base64,<bytes>")
    try:
        return base64.b64decode(value[match.end():], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{field}: the base64 after 'base64,' does not decode; send the file's bytes "
                            "base64-encoded") from None


async def read_json(request, max_bytes: int) -> dict:
    """The request's JSON object, read at most ``max_bytes`` (413 above, 400 when not a JSON object)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise ApiError(413, f"request body of {length} bytes exceeds the limit of {max_bytes}; send smaller "
                            "images or fewer inputs (or start the server with a larger --max-body-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body exceeds the limit of {max_bytes} bytes; send smaller images or "
                                "fewer inputs (or start the server with a larger --max-body-mb)")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not JSON ({e}); send a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def string_list(body: dict, key: str, *, max_items: int, allow_single: bool = True) -> list[str]:
    """``body[key]`` as a non-empty list of strings (a single string accepted when ``allow_single``)."""
    value = body.get(key)
    if allow_single and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, f"'{key}' must be a non-empty string or list of non-empty strings")
    if len(value) > max_items:
        raise ApiError(413, f"'{key}' has {len(value)} items; send at most {max_items} per request")
    return value


def top_k(body: dict, default: int, maximum: int) -> int:
    """``body["top_k"]``: an int in ``[1, maximum]``."""
    value = body.get("top_k", default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApiError(400, f"'top_k' must be an integer from 1 to {maximum}, got {value!r}")
    return value


__all__ = ["ApiError", "decode_data_uri", "is_data_uri", "read_json", "string_list", "top_k"]
