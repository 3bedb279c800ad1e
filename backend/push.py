"""Which push sender the settings ask for."""

from __future__ import annotations

from backend.settings import PushSettings
from notifications import LoggingSender, PushSender


def make_sender(settings: PushSettings, project_id: str) -> PushSender:
    if settings.mode == "log":
        return LoggingSender()
    from notifications.fcm import FcmSender

    return FcmSender(project_id, endpoint=settings.fcm_endpoint, credentials_file=settings.credentials_file)
