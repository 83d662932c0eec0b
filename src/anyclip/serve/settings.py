"""The service's limits and safety switches, validated when built (a ``ValueError`` names the field).

Example:
    >>> ServeSettings(max_body_bytes=1 << 20).request_timeout_s
    30.0
    >>> ServeSettings(max_top_k=0)
    Traceback (most recent call last):
    ValueError: max_top_k must be at least 1, got 0
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """``api_key`` (None: open), CORS ``cors_origins`` (empty: CORS off), body and input limits, the time a
    request may take (504 after it) and the ``Retry-After`` seconds of a 503."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 16 << 20
    max_inputs: int = 64
    max_top_k: int = 100
    request_timeout_s: float = 30.0
    retry_after_s: int = 1

    def __post_init__(self):
        for name in ("max_body_bytes", "max_inputs", "max_top_k", "retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key must not be empty (leave it out for an open service)")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))


__all__ = ["ServeSettings"]
