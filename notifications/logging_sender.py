"""A sender for development: pushes go to the log instead of to phones."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from notifications.base import PushMessage, PushOutcome, PushReport, PushResult

logger = logging.getLogger("truckroll.push")


class LoggingSender:
    """Logs each push on `truckroll.push` and reports it delivered."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    async def send(self, messages: Sequence[PushMessage]) -> PushReport:
        results = []
        for message in messages:
            message_id = f"logged/{next(self._ids)}"
            logger.info(
                "push %s to token …%s: data=%s title=%r body=%r ttl_s=%s high_priority=%s time_sensitive=%s",
                message_id,
                message.token[-8:],
                message.data,
                message.title,
                message.body,
                message.ttl_s,
                message.high_priority,
                message.time_sensitive,
            )
            results.append(PushResult(message, PushOutcome.DELIVERED, message_id=message_id))
        return PushReport(tuple(results))

    async def aclose(self) -> None:
        pass
