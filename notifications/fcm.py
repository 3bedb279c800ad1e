"""Push delivery through Firebase Cloud Messaging (HTTP v1), with the firebase-admin SDK.

Two properties of firebase-admin 7.x shape this module:

* `messaging.send_each_async` sends through one httpx client per App, and that client belongs to the
  event loop it first ran on. Each event loop therefore gets its own App, created on its first send.
* Deleting an App closes that client with `asyncio.run()`, which cannot be called from inside a
  running loop. `aclose()` closes the client on its own loop first, then deletes the App from a thread.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import firebase_admin
import httpx
from firebase_admin import credentials, exceptions, messaging
from google.auth.credentials import AnonymousCredentials

from notifications.base import PushMessage, PushOutcome, PushReport, PushResult

logger = logging.getLogger("truckroll.push")

MAX_MESSAGES_PER_CALL = 500
"""`send_each_async` refuses more in one call."""

_UNREGISTERED = (messaging.UnregisteredError, messaging.SenderIdMismatchError)
# ResourceExhaustedError, not only its subclass QuotaExceededError: FCM's project-wide rate limit
# answers 429 without the FcmError detail that makes the SDK raise QuotaExceededError.
_RETRYABLE = (
    exceptions.ResourceExhaustedError,
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.DeadlineExceededError,
)


@dataclass(frozen=True, slots=True)
class _LoopApp:
    """The firebase App (and so the httpx client) serving one event loop."""

    loop: asyncio.AbstractEventLoop
    app: firebase_admin.App
    http: Any  # the messaging service's firebase_admin._http_client.HttpxAsyncClient
    chunks_in_flight: asyncio.Semaphore


class FcmSender:
    """Sends pushes with the real firebase-admin SDK.

    `endpoint` replaces https://fcm.googleapis.com (a local fake FCM in tests); with it and no
    `credentials_file`, requests are sent unauthenticated. Without either, Google application default
    credentials are used. `timeout_s` bounds each HTTP attempt: an offer that waited minutes for FCM
    is an offer nobody can accept any more.
    """

    def __init__(
        self,
        project_id: str,
        *,
        endpoint: str | None = None,
        credentials_file: str | None = None,
        max_concurrency: int = 4,
        timeout_s: float = 10.0,
    ) -> None:
        if not project_id:
            raise ValueError("project_id is required")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._options = {"projectId": project_id, "httpTimeout": timeout_s}
        self._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send" if endpoint else None
        self._credential: credentials.Base | AnonymousCredentials | None
        if credentials_file:
            self._credential = credentials.Certificate(credentials_file)
        elif endpoint:
            self._credential = AnonymousCredentials()
        else:
            self._credential = None  # initialize_app() then uses application default credentials
        self._max_concurrency = max_concurrency
        self._apps: dict[asyncio.AbstractEventLoop, _LoopApp] = {}
        self._lock = threading.Lock()
        self._closed = False

    async def send(self, messages: Sequence[PushMessage]) -> PushReport:
        if not messages:
            return PushReport()
        loop_app = self._app_for_running_loop()
        chunks = [
            messages[start : start + MAX_MESSAGES_PER_CALL] for start in range(0, len(messages), MAX_MESSAGES_PER_CALL)
        ]
        per_chunk = await asyncio.gather(*(self._send_chunk(loop_app, chunk) for chunk in chunks))
        report = PushReport(tuple(result for results in per_chunk for result in results))
        logger.debug(
            "FCM: %d sent, %d delivered, %d unregistered, %d to retry",
            len(messages),
            report.delivered_count,
            len(report.unregistered_tokens),
            len(report.retryable),
        )
        return report

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            loop_apps = list(self._apps.values())
            self._apps.clear()
        if not loop_apps:
            return
        running = asyncio.get_running_loop()
        for loop_app in loop_apps:
            if loop_app.loop is running:
                await loop_app.http.aclose()
            elif loop_app.loop.is_running():
                # Still serving another thread: its client can only be closed there.
                closing = asyncio.run_coroutine_threadsafe(loop_app.http.aclose(), loop_app.loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(closing), timeout=5)
                except TimeoutError:
                    logger.warning("FCM client of another event loop did not close within 5 s")
        await asyncio.to_thread(_delete_apps, [loop_app.app for loop_app in loop_apps])

    def _app_for_running_loop(self) -> _LoopApp:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("FcmSender is closed")
            loop_app = self._apps.get(loop)
            if loop_app is None:
                loop_app = self._apps[loop] = self._new_app(loop)
            return loop_app

    def _new_app(self, loop: asyncio.AbstractEventLoop) -> _LoopApp:
        app = firebase_admin.initialize_app(
            self._credential, dict(self._options), name=f"truckroll-push-{uuid.uuid4().hex}"
        )
        service = messaging._get_messaging_service(app)
        if self._fcm_url is not None:
            # Checked so that an SDK upgrade renaming the attribute cannot silently send test pushes
            # to the real FCM.
            if not isinstance(getattr(service, "_fcm_url", None), str):
                raise RuntimeError("firebase_admin messaging service has no _fcm_url: cannot redirect FCM")
            service._fcm_url = self._fcm_url
        return _LoopApp(loop, app, service._async_client, asyncio.Semaphore(self._max_concurrency))

    async def _send_chunk(self, loop_app: _LoopApp, chunk: Sequence[PushMessage]) -> list[PushResult]:
        now = datetime.now(UTC)
        fcm_messages = [_fcm_message(message, now) for message in chunk]
        async with loop_app.chunks_in_flight:
            try:
                batch = await messaging.send_each_async(fcm_messages, app=loop_app.app)
            except exceptions.FirebaseError as error:
                # Failures of single requests come back inside the batch; this is the whole call
                # failing (e.g. the access token could not be refreshed).
                logger.warning("FCM call for %d messages failed: %s", len(chunk), error)
                return [PushResult(m, PushOutcome.RETRYABLE, error=str(error)) for m in chunk]
        return [_result(message, response) for message, response in zip(chunk, batch.responses, strict=True)]


def _fcm_message(message: PushMessage, now: datetime) -> messaging.Message:
    headers: dict[str, str] = {}
    if message.ttl_s is not None:
        # APNs reads 0 as "deliver now or never", the meaning a zero TTL has on Android.
        expires = int(now.timestamp()) + message.ttl_s if message.ttl_s else 0
        headers["apns-expiration"] = str(expires)
    if message.collapse_key is not None:
        headers["apns-collapse-id"] = message.collapse_key
    if message.visible:
        headers["apns-push-type"] = "alert"
        headers["apns-priority"] = "10" if message.high_priority or message.time_sensitive else "5"
        aps = messaging.Aps(custom_data={"interruption-level": "time-sensitive"} if message.time_sensitive else None)
    else:
        # A data-only push reaches a backgrounded iOS app only as a background notification, which
        # APNs accepts only at priority 5.
        headers["apns-push-type"] = "background"
        headers["apns-priority"] = "5"
        aps = messaging.Aps(content_available=True)
    android = messaging.AndroidConfig(
        priority="high" if message.high_priority else "normal",
        ttl=timedelta(seconds=message.ttl_s) if message.ttl_s is not None else None,
        collapse_key=message.collapse_key,
        # The tag makes a newer notification replace the one on screen; collapse_key only merges
        # pushes still waiting for the device.
        notification=messaging.AndroidNotification(tag=message.collapse_key) if message.visible else None,
    )
    # `token=`, not `fid=`: 7.7 deprecates `token` in favour of `fid`, but the SDK writes `fid=` to the
    # wire as a "fid" field (a Firebase installation ID), while the device registration tokens our
    # apps report must travel as "token" in the HTTP v1 body.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return messaging.Message(
            token=message.token,
            data=dict(message.data),
            notification=(messaging.Notification(title=message.title, body=message.body) if message.visible else None),
            android=android,
            apns=messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(aps=aps)),
        )


def _result(message: PushMessage, response: messaging.SendResponse) -> PushResult:
    if response.success:
        return PushResult(message, PushOutcome.DELIVERED, message_id=response.message_id)
    error = response.exception
    if error is None:
        return PushResult(message, PushOutcome.INVALID, error="FCM answered without a message id")
    description = f"{error.code}: {error}"
    if isinstance(error, _UNREGISTERED):
        return PushResult(message, PushOutcome.UNREGISTERED, error=description)
    if isinstance(error, _RETRYABLE) or _is_transport_failure(error):
        return PushResult(message, PushOutcome.RETRYABLE, retry_after_s=_retry_after_s(error), error=description)
    logger.warning("FCM rejected a push (%s) with data %s", description, message.data)
    return PushResult(message, PushOutcome.INVALID, error=description)


def _is_transport_failure(error: exceptions.FirebaseError) -> bool:
    # Connection refused and timeouts already arrive as UnavailableError and DeadlineExceededError;
    # other broken connections (reset, protocol error) arrive as UnknownError.
    return error.http_response is None and isinstance(error.cause, httpx.TransportError)


def _retry_after_s(error: exceptions.FirebaseError) -> float | None:
    response = error.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _delete_apps(apps: list[firebase_admin.App]) -> None:
    for app in apps:
        try:
            firebase_admin.delete_app(app)
        except Exception:
            # An App whose event loop is gone cannot close its client cleanly; its sockets are freed
            # with the loop's transports either way.
            logger.debug("closing firebase app %s", app.name, exc_info=True)
