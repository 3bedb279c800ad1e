"""What a push is, what became of it, and the interface every sender offers."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol

import msgspec


class PushMessage(msgspec.Struct, frozen=True):
    """One push to one device registration token.

    `data` reaches the app whether or not anything is shown; a `title` or `body` makes the push
    visible. `ttl_s` is how long FCM and APNs may hold the push for an unreachable device (None: the
    platform default, up to four weeks). A `time_sensitive` push breaks through iOS Focus modes, which
    only a visible push may do.
    """

    token: str
    data: dict[str, str]
    title: str | None = None
    body: str | None = None
    ttl_s: int | None = None
    high_priority: bool = False
    time_sensitive: bool = False
    collapse_key: str | None = None

    def __post_init__(self) -> None:
        # msgspec checks types only when decoding; a non-string data value would otherwise surface
        # as an error from the FCM SDK for the whole batch it travels in.
        if not isinstance(self.token, str) or not self.token:
            raise ValueError("token must be a non-empty string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.data.items()):
            raise ValueError("data keys and values must all be strings (FCM data payload)")
        for name in ("title", "body", "collapse_key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or None")
        if self.ttl_s is not None and (not isinstance(self.ttl_s, int) or self.ttl_s < 0):
            raise ValueError("ttl_s must be a non-negative number of seconds")
        if self.time_sensitive and not self.visible:
            raise ValueError("a time-sensitive push needs a title or a body")

    @property
    def visible(self) -> bool:
        return self.title is not None or self.body is not None


class PushOutcome(enum.StrEnum):
    DELIVERED = "delivered"
    """Accepted by the push service; `message_id` identifies it."""
    UNREGISTERED = "unregistered"
    """The token is dead (app uninstalled, token rotated, another project's token): drop it."""
    RETRYABLE = "retryable"
    """Quota, outage or transport failure: send again later, with backoff."""
    INVALID = "invalid"
    """Rejected as malformed or not allowed: sending it again will fail the same way."""


class PushResult(msgspec.Struct, frozen=True):
    message: PushMessage
    outcome: PushOutcome
    message_id: str | None = None
    retry_after_s: float | None = None
    """For a retryable result: how long the push service asked us to wait, when it said."""
    error: str | None = None
    """Why it was not delivered, for logs."""


class PushReport(msgspec.Struct, frozen=True):
    """The outcome of every message of one `send`, in the order they were given."""

    results: tuple[PushResult, ...] = ()

    @property
    def delivered_count(self) -> int:
        return sum(1 for r in self.results if r.outcome is PushOutcome.DELIVERED)

    @property
    def unregistered_tokens(self) -> list[str]:
        """Tokens to delete, each once."""
        return list(dict.fromkeys(r.message.token for r in self.results if r.outcome is PushOutcome.UNREGISTERED))

    @property
    def retryable(self) -> list[PushMessage]:
        return [r.message for r in self.results if r.outcome is PushOutcome.RETRYABLE]

    @property
    def retry_after_s(self) -> float | None:
        """The longest wait the push service asked for among the retryable messages, if it asked."""
        hints = [
            r.retry_after_s for r in self.results if r.outcome is PushOutcome.RETRYABLE and r.retry_after_s is not None
        ]
        return max(hints, default=None)


class PushSender(Protocol):
    async def send(self, messages: Sequence[PushMessage]) -> PushReport:
        """Deliver each message once; failures are reported per message, never raised."""
        ...

    async def aclose(self) -> None: ...
