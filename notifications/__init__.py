"""Push delivery to technicians' phones.

`FcmSender` lives in `notifications.fcm`, the only module that imports the Firebase SDK, so that importing
this package stays cheap where FCM is not used.
"""

from notifications.base import PushMessage, PushOutcome, PushReport, PushResult, PushSender
from notifications.logging_sender import LoggingSender

__all__ = ["LoggingSender", "PushMessage", "PushOutcome", "PushReport", "PushResult", "PushSender"]
