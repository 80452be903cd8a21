"""The Slack transport: `/flux` and `@fluxbot` over slack-bolt, threads, confirmations.

Bolt verifies request signatures; this module acks at once, then runs the request through
`FluxBot.respond` in Bolt's worker thread and posts everything about it into one thread.
Identity is always the signed Slack user ID.
"""
from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.blocks import confirm_buttons, fallback, to_blocks
from bot.config import SlackSettings
from bot.service import FluxBot, Request, Response
from bot.store import Store
from commands.model import Message

log = logging.getLogger(__name__)

_MENTION = re.compile(r"^\s*<@[A-Z0-9]+>\s*")


def web_client(settings: SlackSettings) -> WebClient:
    """A Web API client that retries rate limits (honouring Retry-After) and dropped connections."""
    base_url = (settings.api_url.rstrip("/") + "/") if settings.api_url else WebClient.BASE_URL
    return WebClient(
        token=settings.bot_token,
        base_url=base_url,
        timeout=10,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2), ConnectionErrorRetryHandler(max_retry_count=2)],
    )


def slack_token_problem(client: WebClient) -> str:
    """Why Slack does not accept the bot token (`invalid_auth`, unreachable...), or '' when it does."""
    try:
        client.auth_test()
    except SlackApiError as error:
        return str(error.response.get("error", "rejected"))
    except Exception as error:  # urllib raises several unrelated types for a dead endpoint
        return f"unreachable: {error.__class__.__name__}"
    return ""


class GroupDirectory:
    """Members of the Slack user groups that permission rules name, cached for a while."""

    def __init__(self, client: WebClient, ttl: float) -> None:
        self._client = client
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def groups_of(self, user: str, groups: set[str]) -> frozenset[str]:
        return frozenset(g for g in groups if user in self.members(g))

    def members(self, group: str) -> frozenset[str]:
        with self._lock:
            cached = self._cache.get(group)
            if cached and time.monotonic() - cached[0] < self._ttl:
                return cached[1]
        try:
            users = frozenset(self._client.usergroups_users_list(usergroup=group)["users"])
        except SlackApiError as error:
            log.warning("cannot list user group %s: %s", group, error.response.get("error"))
            return cached[1] if cached else frozenset()
        with self._lock:
            self._cache[group] = (time.monotonic(), users)
        return users


class SlackTransport:
    def __init__(self, bot: FluxBot, store: Store, settings: SlackSettings,
                 client: WebClient | None = None, clock: Callable[[], float] = time.time) -> None:
        self.bot = bot
        self.store = store
        self.settings = settings
        self.client = client or web_client(settings)
        self.groups = GroupDirectory(self.client, settings.group_cache_seconds)
        self.clock = clock
        self.gate: Any = None  # a ChangeGate, when the change gate is configured
        # Work runs here, not on Bolt's listener threads: those must stay free to ack new requests
        # at once, however long a promotion takes.
        self._work = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fluxbot-work")
        self.app = self._build_app()

    def _build_app(self) -> App:
        app = App(
            signing_secret=self.settings.signing_secret,
            client=self.client,
            process_before_response=False,
            token_verification_enabled=False,  # `fluxbot serve` checks the token itself, with a clear error
            # Slack retries an event it thinks we missed; fluxbot dedupes by event_id instead.
            ignoring_self_events_enabled=True,
        )
        app.command(re.compile(r"^/flux"))(self._on_command)
        app.event("app_mention")(self._on_mention)
        app.action("fluxbot_confirm")(self._on_confirm)
        app.action("fluxbot_cancel")(self._on_cancel)
        app.action("fluxbot_gate_approve")(self._on_gate_decision)
        app.action("fluxbot_gate_reject")(self._on_gate_decision)
        app.action("fluxbot_rollback")(self._on_rollback)
        app.action(re.compile(r"^fluxbot_link_"))(lambda ack: ack())
        app.error(self._on_error)
        return app

    # listeners --------------------------------------------------------------------------------

    def _on_command(self, ack: Callable[..., None], command: dict[str, Any], respond: Callable[..., Any]) -> None:
        ack()
        self._submit(self.run, command.get("text", ""), command["user_id"], command["channel_id"],
                     command.get("command", "/flux"), unreachable=lambda text: respond(text=text, response_type="ephemeral"),
                     delivery=("slack-command", command.get("trigger_id") or uuid.uuid4().hex))

    def _on_mention(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        text = _MENTION.sub("", event.get("text", ""))
        self._submit(self.run, text, event["user"], event["channel"], "@fluxbot", thread_ts=event.get("thread_ts"),
                     delivery=("slack-event", body.get("event_id") or event.get("event_ts", "")))

    def _on_confirm(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        self._submit(self._settle, body, "confirmed")

    def _on_cancel(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        self._submit(self._settle, body, "cancelled")

    def close(self) -> None:
        """Finish the work already accepted (its requests were acked), then take no more."""
        self._work.shutdown(wait=True)

    def _submit(self, work: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def safely() -> None:
            try:
                work(*args, **kwargs)
            except Exception:
                log.exception("slack request failed")

        self._work.submit(safely)

    def _on_rollback(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        """The Roll back button under a failed reconcile: `rollback <cluster> from <tag> to <older>`
        as the clicker; the value was fixed when the button was offered."""
        ack()
        cluster, user = body["actions"][0]["value"], body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        thread_ts = (body.get("message") or {}).get("thread_ts") or body["container"].get("thread_ts") \
            or body["container"].get("message_ts")
        self._submit(self.run, f"rollback {cluster}", user, channel, "/flux", thread_ts=thread_ts)

    def _on_gate_decision(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        action, user = body["actions"][0], body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        if self.gate is None:
            self._ephemeral(channel, user, "The change gate is not configured on this fluxbot.")
            return
        def decide() -> None:
            answer = self.gate.decide(action["value"], user, approve=action["action_id"] == "fluxbot_gate_approve")
            if answer:
                self._ephemeral(channel, user, answer)

        self._submit(decide)

    # Notifier for the change gate -------------------------------------------------------------

    def replace(self, channel: str | None, ts: str | None, message: Message) -> None:
        if channel:
            self._replace(channel, ts, message)

    def members(self, group: str) -> frozenset[str]:
        return self.groups.members(group) if group else frozenset()

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed: %s", error.__class__.__name__, exc_info=error)

    # the request flow -------------------------------------------------------------------------

    def run(self, text: str, user: str, channel: str, how: str, thread_ts: str | None = None,
            unreachable: Callable[[str], Any] | None = None, delivery: tuple[str, str] | None = None) -> None:
        """Announce the request in the channel, then answer everything about it in its thread.

        `delivery` identifies the Slack delivery; one seen before (a retry) is dropped here, off
        the ack path.
        """
        if delivery is not None and not self.store.first_delivery(*delivery):
            return
        shown = f"{how} {text.strip()}" if how.startswith("/") else text.strip()
        shown = shown if len(shown) <= 200 else shown[:200] + "…"  # an oversized request is not echoed whole
        root = thread_ts or self.post(channel, Message(f"<@{user}> asked: {shown}"[:150],
                                                        lines=(f"`{shown}`",), context="replies follow in the thread"),
                                      text=f"<@{user}> asked: `{shown}`")
        if root is None:
            if unreachable is not None:
                try:
                    unreachable("fluxbot cannot post in this channel: invite it with `/invite @fluxbot`, then ask again. "
                                "Nothing was done.")
                except Exception:  # the response_url may be gone too; the log already says why
                    log.warning("could not tell the user that the channel is unreachable")
            return
        groups = self.groups.groups_of(user, self.bot.policy.groups)
        response = self.bot.respond(Request(text, user, channel, groups, confirm_risky=True, thread_ts=root))
        self._deliver(response, text, user, channel, root)

    def recover(self, everything: bool = False, now: float | None = None, max_attempts: int = 10,
                claimed: Any = None) -> None:
        """Answer, in their threads, the requests that are due again (crash, Slack or forge outage);
        `claimed`: the ones `bot.claim` returned earlier."""
        pairs = self.bot.rerun(claimed) if claimed is not None else self.bot.recover(everything, now, max_attempts)
        for request, response in pairs:
            self._deliver(response, request.text, request.user, request.channel, request.thread_ts)

    def _deliver(self, response: Response, text: str, user: str, channel: str, thread_ts: str) -> None:
        if response.confirmation is not None:
            cid = uuid.uuid4().hex
            self.store.add_confirmation(cid, user, channel, thread_ts, response.fixed_text or text, self.clock(),
                                        self.settings.confirm_ttl_seconds)
            minutes = max(1, round(self.settings.confirm_ttl_seconds / 60))
            summary = "\n".join(response.confirmation.lines)
            delivered = self.post(channel, response.confirmation, thread_ts,
                                  actions=confirm_buttons(cid, summary), note=f" Expires in {minutes} min.") is not None
        else:
            delivered = True
        for message in response.messages:
            delivered = self.post(channel, message, thread_ts) is not None and delivered
        for pr in response.prs:
            self.store.link_thread(self.bot.forge.name, pr.number, channel, thread_ts, user)
        # An answer Slack did not take stays in the journal: `recover` runs it again (idempotently)
        # and posts it once Slack is back, a bounded number of times.
        if delivered:
            self.bot.finish(response)

    def _settle(self, body: dict[str, Any], outcome: str) -> None:
        action = body["actions"][0]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        message_ts = (body.get("container") or {}).get("message_ts")
        status, row = self.store.settle_confirmation(action["value"], user, self.clock(), outcome)
        if status == "not_requester" and row is not None:
            self._ephemeral(channel, user, f"Only <@{row['user']}> can confirm or cancel this request.")
            return
        if status in ("unknown", "settled") or row is None:
            self._ephemeral(channel, user, "This request was already confirmed, cancelled or has expired.")
            return
        if status == "expired":
            self._replace(channel, message_ts, Message("Confirmation expired; nothing was done", tone="warning",
                                                       lines=(f"ask again: `/flux {row['text']}`",)))
            return
        if outcome == "cancelled":
            self._replace(channel, message_ts, Message(f"Cancelled by <@{user}>; nothing was done", tone="info"))
            return
        self._replace(channel, message_ts, Message(f"Confirmed by <@{user}>: {row['text']}", tone="info"))
        groups = self.groups.groups_of(user, self.bot.policy.groups)
        response = self.bot.respond(Request(row["text"], user, channel, groups, confirm_risky=True, confirmed=True,
                                            thread_ts=row["thread_ts"]))
        self._deliver(response, row["text"], user, channel, row["thread_ts"])

    # Slack Web API ------------------------------------------------------------------------------

    def post(self, channel: str, message: Message, thread_ts: str | None = None, *,
             actions: list[dict[str, Any]] | None = None, text: str | None = None, note: str = "") -> str | None:
        """chat.postMessage with blocks and a text fallback; the message ts, or None on failure."""
        if note:
            message = Message(message.title, message.lines, message.fields, message.table, message.links,
                              (message.context + note).strip(), message.tone)
        try:
            reply = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text or fallback(message),
                                                 blocks=to_blocks(message, actions), unfurl_links=False)
            return str(reply["ts"])
        except SlackApiError as error:
            code = error.response.get("error", "unknown_error")
            log.error("chat.postMessage to %s failed: %s", channel, code)
            if code in ("not_in_channel", "channel_not_found"):
                log.error("invite fluxbot to channel %s (or check its ID) so it can post there", channel)
            return None

    def _replace(self, channel: str, ts: str | None, message: Message) -> None:
        if not ts:
            return
        try:
            self.client.chat_update(channel=channel, ts=ts, text=fallback(message), blocks=to_blocks(message))
        except SlackApiError as error:
            log.error("chat.update failed: %s", error.response.get("error"))

    def _ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as error:
            log.error("chat.postEphemeral failed: %s", error.response.get("error"))
