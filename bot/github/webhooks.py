"""`POST /github/webhook`: verified, deduplicated GitHub events handed to the change gate.

The signature (`X-Hub-Signature-256`, HMAC-SHA256 with GITHUB_WEBHOOK_SECRET) is checked in
constant time before anything else; a delivery already handled is acknowledged and dropped. Events
are handled in order on one worker thread, so GitHub gets its answer at once. A delivery is
recorded as handled only once its handler returned, so GitHub's "Redeliver" works after a failure.
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable

from bot.github.vocabulary import MAX_PAYLOAD_BYTES, PING, SUBSCRIBED_EVENTS
from bot.metrics import WEBHOOK_DELIVERIES
from bot.store import Store

log = logging.getLogger(__name__)


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is `sha256=<hex>` of `body` under `secret` (constant-time compare)."""
    if not secret or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class GitHubWebhook:
    """A WSGI app for GitHub's webhook deliveries."""

    def __init__(self, secret: str, store: Store, handle: Callable[[str, dict[str, Any]], None],
                 repository: str = "") -> None:
        self._secret = secret
        self._repository = repository.lower()  # owner/name; events of other repositories are dropped
        self._store = store
        self._handle = handle
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="github-events")
        self._accepted = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, "405 Method Not Allowed", {"error": "POST only"})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        event = environ.get("HTTP_X_GITHUB_EVENT", "")
        if length > MAX_PAYLOAD_BYTES:
            WEBHOOK_DELIVERIES.labels(event=_label(event), result="too_large").inc()
            return _reply(start_response, "413 Payload Too Large", {"error": "payload too large"})
        body = environ["wsgi.input"].read(length) if length else b""
        if not signature_ok(self._secret, body, environ.get("HTTP_X_HUB_SIGNATURE_256", "")):
            log.warning("github webhook with a missing or wrong signature was refused")
            WEBHOOK_DELIVERIES.labels(event=_label(event), result="bad_signature").inc()
            return _reply(start_response, "401 Unauthorized", {"error": "bad signature"})
        delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
        try:
            payload = json.loads(body)
        except ValueError:
            return _reply(start_response, "400 Bad Request", {"error": "body is not JSON"})
        if event == PING:
            return _reply(start_response, "200 OK", {"ok": True, "zen": payload.get("zen", "")})
        other = str((payload.get("repository") or {}).get("full_name", "")).lower()
        if self._repository and other and other != self._repository:
            # an App installed organization-wide sends every repository's events: none is ours to act on
            WEBHOOK_DELIVERIES.labels(event=_label(event), result="ignored").inc()
            return _reply(start_response, "200 OK", {"ok": True, "ignored": "another repository"})
        if delivery and self._store.delivery_seen("github", delivery):
            WEBHOOK_DELIVERIES.labels(event=_label(event), result="duplicate").inc()
            return _reply(start_response, "200 OK", {"ok": True, "duplicate": True})
        WEBHOOK_DELIVERIES.labels(event=_label(event), result="accepted").inc()
        self._accepted += 1
        self._worker.submit(self._safely, event, delivery, payload)
        return _reply(start_response, "202 Accepted", {"ok": True})

    def _safely(self, event: str, delivery: str, payload: dict[str, Any]) -> None:
        # checked again here: two copies of one delivery may both have been accepted meanwhile
        if delivery and self._store.delivery_seen("github", delivery):
            return
        try:
            self._handle(event, payload)
        except Exception:
            log.exception("handling the github %s event failed; a redelivery will run it again", event)
            return
        if delivery:
            self._store.first_delivery("github", delivery)

    def close(self) -> None:
        """Handle what was accepted, then end the worker thread (shutdown)."""
        self.drain()
        self._worker.shutdown(wait=True)

    def drain(self) -> None:
        """Wait until every accepted event is handled, including events accepted meanwhile (tests, shutdown)."""
        while True:
            accepted = self._accepted
            done: Future[None] = self._worker.submit(lambda: None)
            done.result(timeout=60)
            if self._accepted == accepted:
                return


# GitHub's event names (https://docs.github.com/en/webhooks/webhook-events-and-payloads); anything
# else is `other`, so an unsigned caller cannot mint label values.
_EVENTS = {*SUBSCRIBED_EVENTS, "check_suite", PING}


def _label(event: str) -> str:
    return event if event in _EVENTS else "other"


def _reply(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
