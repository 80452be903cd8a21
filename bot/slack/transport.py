"""The Slack transport: `/flux` and `@fluxbot` over slack-bolt, threads, confirmations, the outbox.

Bolt verifies request signatures; this module acks at once, decodes Slack's markup (one place:
`_arrived`), runs the request through `FluxBot.respond` on a worker thread and answers in one
thread. Identity is always the signed Slack user ID.

Everything fluxbot posts goes through the outbox (`bot.store`): an answer is rendered once and
each of its messages is delivered once, in order, paced per channel (about one a second, as Slack
asks) and retried, bounded, when Slack does not take it. A retry resumes where delivery stopped;
it never runs the request again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.config import SlackSettings
from bot.metrics import API_ERRORS
from bot.service import FluxBot, Request, Response
from bot.slack import limits
from bot.slack.blocks import Page, confirm_buttons, to_pages
from bot.slack.home import home_view
from bot.slack.modals import CALLBACK_ID as CHANGE_MODAL
from bot.slack.modals import change_modal, submitted_text
from bot.slack.markup import command_text, decode, to_mrkdwn
from bot.store import Store
from commands.model import CommandError, Message
from commands.registry import parse

log = logging.getLogger(__name__)

_UNREACHABLE = ("not_in_channel", "channel_not_found", "is_archived")


class CountingWebClient(WebClient):
    """slack_sdk's client; every failed call (after its retries) counted by Slack's error code."""

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            return super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            API_ERRORS.labels("slack", str(error.response.get("error") or error.response.status_code)).inc()
            raise
        except OSError:  # urllib's URLError and the connection errors slack_sdk lets through
            API_ERRORS.labels("slack", "unreachable").inc()
            raise


def web_client(settings: SlackSettings) -> WebClient:
    """A Web API client that retries rate limits (honouring Retry-After) and dropped connections."""
    base_url = (settings.api_url.rstrip("/") + "/") if settings.api_url else WebClient.BASE_URL
    return CountingWebClient(
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


def channel_problem(client: WebClient, channel: str) -> str:
    """Why fluxbot cannot post in `channel` (not a member, not found...), or '' when it can (conversations.info)."""
    try:
        info = client.conversations_info(channel=channel)["channel"]
    except SlackApiError as error:
        return str(error.response.get("error", "rejected"))
    except Exception as error:
        return f"unreachable: {error.__class__.__name__}"
    if info.get("is_archived"):
        return "is_archived"
    return "" if info.get("is_member") else "not_in_channel"


class Directory:
    """Names and group members from Slack, cached: users (users.info), group handles and members.

    Members are served from the cache for `ttl` seconds; when Slack cannot be asked, a stale list
    is served for at most `max_stale` seconds more, then nobody counts as a member (a removed
    member loses rights; the refusal says that Slack could not be asked).
    """

    def __init__(self, client: WebClient, ttl: float, max_stale: float | None = None, attempts: int = 3,
                 clock: Callable[[], float] = time.monotonic, pause: float = 0.2) -> None:
        self._client = client
        self._ttl = ttl
        self._max_stale = ttl if max_stale is None else max_stale
        self._attempts = attempts
        self._clock = clock
        self._pause = pause
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._users: dict[str, tuple[float, str]] = {}
        self._handles: tuple[float, dict[str, str]] | None = None
        self._lock = threading.Lock()
        self.failures: list[str] = []  # groups Slack could not list, for the log and the refusal

    # names (markup.Names) ---------------------------------------------------------------------

    def user(self, user_id: str) -> str:
        with self._lock:
            cached = self._users.get(user_id)
        if cached and self._clock() - cached[0] < self._ttl * 12:
            return cached[1]
        try:
            user = self._client.users_info(user=user_id)["user"]
        except Exception as error:  # a name is cosmetic: the ID will do, for a while
            log.info("users.info for %s failed: %s", user_id, _code(error))
            name = cached[1] if cached else user_id
            with self._lock:
                self._users[user_id] = (self._clock() - self._ttl * 11, name)  # ask again after one ttl
            return name
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name") or user_id
        with self._lock:
            self._users[user_id] = (self._clock(), str(name))
        return str(name)

    def group(self, group_id: str) -> str:
        with self._lock:
            handles = self._handles
        if handles is None or self._clock() - handles[0] >= self._ttl:
            try:
                groups = self._client.usergroups_list()["usergroups"]
                handles = (self._clock(), {str(g["id"]): str(g.get("handle") or g.get("name") or g["id"]) for g in groups})
                with self._lock:
                    self._handles = handles
            except Exception as error:  # a name is cosmetic: the ID will do
                log.info("usergroups.list failed: %s", _code(error))
                handles = (self._clock(), handles[1] if handles else {})
                with self._lock:
                    self._handles = handles
        return handles[1].get(group_id, group_id)

    # members ----------------------------------------------------------------------------------

    def groups_of(self, user: str, groups: set[str]) -> frozenset[str]:
        return self.lookup(user, groups)[0]

    def lookup(self, user: str, groups: set[str]) -> tuple[frozenset[str], frozenset[str]]:
        """(the groups `user` is in, the groups Slack could not be asked about just now)."""
        found = {group: self._group_members(group) for group in groups}
        return (frozenset(g for g, (members, _) in found.items() if user in members),
                frozenset(g for g, (_, known) in found.items() if not known))

    def members(self, group: str) -> frozenset[str]:
        return self._group_members(group)[0]

    def _group_members(self, group: str) -> tuple[frozenset[str], bool]:
        with self._lock:
            cached = self._members.get(group)
        age = self._clock() - cached[0] if cached else None
        if cached and age is not None and age < self._ttl:
            return cached[1], True
        for attempt in range(self._attempts):
            try:
                users = frozenset(self._client.usergroups_users_list(usergroup=group)["users"])
            except SlackApiError as error:
                code = error.response.get("error")
                log.warning("cannot list user group %s: %s (attempt %d)", group, code, attempt + 1)
                if code == "no_such_subteam":
                    break
            except Exception as error:  # a timeout or a dropped connection
                log.warning("cannot list user group %s: %s (attempt %d)", group, error.__class__.__name__, attempt + 1)
            else:
                with self._lock:
                    self._members[group] = (self._clock(), users)
                return users, True
            time.sleep(self._pause * (attempt + 1))
        self.failures.append(group)
        if cached and age is not None and age < self._ttl + self._max_stale:
            return cached[1], True
        return frozenset(), False


GroupDirectory = Directory  # the name the gate and older callers know


class Pacer:
    """At most `rate` posts a second per channel after a burst of `burst` (Slack's chat.postMessage limit)."""

    def __init__(self, rate: float = limits.POSTS_PER_SECOND_PER_CHANNEL, burst: int = limits.POST_BURST) -> None:
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait(self, channel: str) -> None:
        if self._rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            tokens, at = self._buckets.get(channel, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - at) * self._rate) - 1
            self._buckets[channel] = (tokens, now)
            delay = -tokens / self._rate if tokens < 0 else 0.0
        if delay > 0:
            time.sleep(delay)


class SlackTransport:
    def __init__(self, bot: FluxBot, store: Store, settings: SlackSettings,
                 client: WebClient | None = None, clock: Callable[[], float] = time.time,
                 pacer: Pacer | None = None, max_post_attempts: int = 10) -> None:
        self.bot = bot
        self.store = store
        self.settings = settings
        self.client = client or web_client(settings)
        self.directory = Directory(self.client, settings.group_cache_seconds)
        self.groups = self.directory
        self.clock = clock
        self.pacer = pacer or Pacer()
        self.max_post_attempts = max_post_attempts
        self.gate: Any = None  # a ChangeGate, when the change gate is configured
        # `serve --workers N`: requests are journalled and left to the worker processes, which claim
        # and run them (`fluxbot work`); this process only verifies, deduplicates, journals and acks
        self.queue_only = False
        self.problems: dict[str, str] = {}  # channel -> the last reason Slack refused a post there
        self._bot_user_id = ""
        # Work runs here, not on Bolt's listener threads: those must stay free to ack new requests
        # at once, however long a promotion takes.
        self._work = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fluxbot-work")
        self.app = self._build_app()

    def _build_app(self) -> App:
        app = App(
            signing_secret=self.settings.signing_secret,
            client=self.client,
            # Every listener acks, then hands its work to our pool: run on the request's own thread, so
            # the ack is the response at once. With False, Bolt runs the listener on another thread and
            # polls for the ack every 10 ms (slack_bolt/listener/thread_runner.py): a 10 ms floor per ack.
            process_before_response=True,
            token_verification_enabled=False,  # `fluxbot serve` checks the token itself, with a clear error
            # Slack retries an event it thinks we missed; fluxbot dedupes by event_id instead.
            ignoring_self_events_enabled=True,
        )
        app.command(re.compile(r"^/flux"))(self._on_command)
        app.event("app_mention")(self._on_mention)
        app.event("app_home_opened")(self._on_home)
        app.view(CHANGE_MODAL)(self._on_change_modal)
        app.shortcut(re.compile(r"^fluxbot_(promote|rollback)$"))(self._on_shortcut)
        app.action("fluxbot_confirm")(self._on_confirm)
        app.action("fluxbot_cancel")(self._on_cancel)
        app.action("fluxbot_gate_approve")(self._on_gate_decision)
        app.action("fluxbot_gate_reject")(self._on_gate_decision)
        app.action("fluxbot_rollback")(self._on_rollback)
        app.action("fluxbot_retry")(self._on_retry)
        app.action(re.compile(r"^fluxbot_link_"))(lambda ack: ack())
        app.error(self._on_error)
        return app

    # listeners --------------------------------------------------------------------------------

    def _arrived(self, text: str) -> str:
        """Slack's encoded text as plain text: the one place every way text arrives goes through."""
        return decode(text, self.directory).strip()

    def _on_command(self, ack: Callable[..., None], command: dict[str, Any], respond: Callable[..., Any]) -> None:
        ack()
        self._submit(self._command, command, respond)

    def _command(self, command: dict[str, Any], respond: Callable[..., Any]) -> None:
        """A slash command, after the ack: decoding may ask Slack for names, so not on the ack path."""
        text = self._arrived(command.get("text", ""))
        if text.lower() in ("promote", "rollback") and command.get("trigger_id"):
            # No arguments: a modal to pick them (views.open must follow within 3 s of the trigger).
            self.open_change_modal(text.lower(), command["trigger_id"], command["channel_id"])
            return
        delivery = ("slack-command", command.get("trigger_id") or uuid.uuid4().hex)
        if self.settings.ephemeral_reads and _is_read(text):
            self.answer_privately(text, command["user_id"], command["channel_id"], delivery=delivery)
            return
        self.run(text, command["user_id"], command["channel_id"], command.get("command", "/flux"),
                 unreachable=lambda text: respond(text=text, response_type="ephemeral"), delivery=delivery)

    def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        self._submit(self._mention, event, body, context.bot_user_id or self._bot_user_id or _authorized_user(body))

    def _mention(self, event: dict[str, Any], body: dict[str, Any], bot_user: str) -> None:
        text = self._arrived(command_text(event.get("text", ""), bot_user))
        # A mention is answered in a thread under the user's own message (or in its thread).
        root = event.get("thread_ts") or event.get("ts") or event.get("event_ts")
        self.run(text, event["user"], event["channel"], "@fluxbot", thread_ts=root,
                 delivery=("slack-event", body.get("event_id") or event.get("event_ts", "")))

    def open_change_modal(self, verb: str, trigger_id: str, channel: str) -> None:
        repo = self.bot.snapshot()
        versions = [v.tag for v in reversed(repo.versions)]
        try:
            self.client.views_open(trigger_id=trigger_id, view=change_modal(verb, repo.clusters, versions, channel))
        except SlackApiError as error:
            log.error("views.open failed: %s", error.response.get("error"))

    def _on_shortcut(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        verb = str(body["callback_id"]).removeprefix("fluxbot_")
        self._submit(self.open_change_modal, verb, body["trigger_id"], "")

    def _on_change_modal(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        """A submitted promote / rollback modal: the command it spells, run as the submitter."""
        text, channel = submitted_text(body["view"])
        if not channel:
            ack(response_action="errors", errors={"channel": "Pick a channel for the answer"})
            return
        ack()
        self._submit(self.run, text, body["user"]["id"], channel, "/flux",
                     delivery=("slack-view", f"{body['view'].get('id', '')}:{body['view'].get('hash', '')}"))

    def _on_home(self, event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home":
            self._submit(self.publish_home, event["user"])

    def publish_home(self, user: str) -> None:
        """The App Home tab for `user` (views.publish): the fleet, their confirmations, pending approvals."""
        view = home_view(self.bot, user, self.clock(), self.directory)
        try:
            self.client.views_publish(user_id=user, view=view)
        except SlackApiError as error:
            log.error("views.publish for %s failed: %s", user, error.response.get("error"))

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
        channel, thread_ts = _where(body)
        self._submit(self.run, f"rollback {cluster}", user, channel, "/flux",
                     thread_ts=thread_ts or body["container"].get("message_ts"))

    def _on_retry(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        """The Ask again button of an expired confirmation: the same request, as the clicker, in its thread."""
        ack()
        channel, thread_ts = _where(body)
        self._submit(self.run, body["actions"][0]["value"], body["user"]["id"], channel, "/flux",
                     thread_ts=thread_ts or body["container"].get("message_ts"))

    def _on_gate_decision(self, ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        action, user = body["actions"][0], body["user"]["id"]
        channel, thread_ts = _where(body)
        if self.gate is None:
            self._ephemeral(channel, user, "The change gate is not configured on this fluxbot.", thread_ts)
            return

        def decide() -> None:
            answer = self.gate.decide(action["value"], user, approve=action["action_id"] == "fluxbot_gate_approve")
            if answer:
                self._ephemeral(channel, user, answer, thread_ts)

        self._submit(decide)

    # Notifier for the change gate and the reconcile follower -----------------------------------

    def replace(self, channel: str | None, ts: str | None, message: Message) -> None:
        if channel:
            self._replace(channel, ts, message)

    def members(self, group: str) -> frozenset[str]:
        return self.directory.members(group) if group else frozenset()

    def post_problem(self, channel: str) -> str:
        """Why Slack last refused a post in `channel` (`not_in_channel`...), '' if it did not."""
        return self.problems.get(channel, "")

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed: %s", error.__class__.__name__, exc_info=error)

    # the request flow -------------------------------------------------------------------------

    def run(self, text: str, user: str, channel: str, how: str, thread_ts: str | None = None,
            unreachable: Callable[[str], Any] | None = None, delivery: tuple[str, str] | None = None) -> None:
        """Answer in a thread: under the user's message (mentions, buttons) or under an "asked" post (slash
        commands, which Slack does not show in the channel).

        `delivery` identifies the Slack delivery; one seen before (a retry) is dropped here, off
        the ack path.
        """
        if delivery is not None and not self.store.first_delivery(*delivery):
            return
        shown = f"{how} {text.strip()}" if how.startswith("/") else text.strip()
        shown = shown if len(shown) <= 200 else shown[:200] + "…"  # an oversized request is not echoed whole
        root = thread_ts or self._post_now(channel, Message(f"<@{user}> asked", lines=(f"`{shown}`",),
                                                            context="replies follow in the thread"))
        if root is None:
            if unreachable is not None:
                try:
                    unreachable("fluxbot cannot post in this channel: invite it with `/invite @fluxbot`, then ask again. "
                                "Nothing was done.")
                except Exception:  # the response_url may be gone too; the log already says why
                    log.warning("could not tell the user that the channel is unreachable")
            return
        groups, unknown = self.directory.lookup(user, self.bot.policy.groups)
        if self.queue_only:
            self._queue(user, text, channel, root, groups, confirmed=False)
            return
        response = self.bot.respond(Request(text, user, channel, groups, confirm_risky=True, thread_ts=root))
        self._deliver(_unknown_groups(response, unknown), text, user, channel, root)

    def _queue(self, user: str, text: str, channel: str, thread_ts: str, groups: Any, confirmed: bool) -> None:
        """`serve --workers`: journal the request due at once; the next worker to look claims and runs it."""
        self.store.begin_request(user, text, channel, thread_ts, sorted(groups), confirmed, self.clock(), in_flight=0.0)

    def answer_privately(self, text: str, user: str, channel: str, delivery: tuple[str, str] | None = None) -> None:
        """A read (`slack.ephemeral_reads`): answered only to the asker, in the channel, without a thread."""
        if delivery is not None and not self.store.first_delivery(*delivery):
            return
        groups = self.directory.groups_of(user, self.bot.policy.groups)
        response = self.bot.respond(Request(text, user, channel, groups))
        for message in response.messages:
            for page in to_pages(message, None, self.directory):
                try:
                    self.client.chat_postEphemeral(channel=channel, user=user, text=page.text, blocks=page.blocks)
                except SlackApiError as error:
                    log.error("chat.postEphemeral failed: %s", error.response.get("error"))
        self.bot.finish(response)

    def work(self, stop: Any, every: float = 0.05) -> None:
        """A worker process's loop: claim what is due in the journal, run it, deliver the answers."""
        while not stop.is_set():
            try:
                if self.store.due(self.clock()):  # a read first: an idle worker takes no write lock
                    self.recover(limit=1)  # one at a time: the other workers take the rest
            except Exception:
                log.exception("working off the journal failed; trying again")
            stop.wait(every)

    def recover(self, everything: bool = False, now: float | None = None, max_attempts: int = 10,
                claimed: Any = None, limit: int = 0) -> None:
        """Deliver posts Slack did not take yet, then answer the requests that are due again (crash, outage);
        `claimed`: the ones `bot.claim` returned earlier."""
        if everything or claimed is not None:  # at start: what a dead process was sending is pending again
            self.store.release_posts()
        self.flush(now=now)
        pairs = (self.bot.rerun(claimed) if claimed is not None
                 else self.bot.recover(everything, now, max_attempts, limit))
        for request, response in pairs:
            self._deliver(response, request.text, request.user, request.channel, request.thread_ts)

    def _deliver(self, response: Response, text: str, user: str, channel: str, thread_ts: str) -> None:
        """Render the whole answer, journal its messages, mark the request answered, then deliver them."""
        pages: list[Page] = []
        if response.confirmation is not None:
            cid = uuid.uuid4().hex
            self.store.add_confirmation(cid, user, channel, thread_ts, response.fixed_text or text, self.clock(),
                                        self.settings.confirm_ttl_seconds)
            minutes = max(1, round(self.settings.confirm_ttl_seconds / 60))
            summary = "\n".join(response.confirmation.lines)
            confirmation = _with_note(response.confirmation, f" Expires in {minutes} min.")
            pages += to_pages(confirmation, confirm_buttons(cid, summary), self.directory)
        for message in response.messages:
            pages += to_pages(message, None, self.directory)
        for pr in response.prs:
            self.store.link_thread(self.bot.forge.name, pr.number, channel, thread_ts, user)
        ids = self.store.queue_posts(response.request_id, [(channel, thread_ts, _payload(page), "") for page in pages],
                                     finished=bool(response.request_id) and not response.pending,
                                     deferred=bool(response.request_id) and response.pending)
        self.bot.finish(response)
        self.flush(ids)

    def _settle(self, body: dict[str, Any], outcome: str) -> None:
        action = body["actions"][0]
        user = body["user"]["id"]
        channel, thread_ts = _where(body)
        message_ts = (body.get("container") or {}).get("message_ts")
        status, row = self.store.settle_confirmation(action["value"], user, self.clock(), outcome)
        if status == "not_requester" and row is not None:
            self._ephemeral(channel, user, f"Only <@{row['user']}> can confirm or cancel this request.", thread_ts)
            return
        if status in ("unknown", "settled") or row is None:
            self._ephemeral(channel, user, "This request was already confirmed, cancelled or has expired.", thread_ts)
            return
        if status == "expired":
            # Slash commands cannot be used in threads: offer a button, and the mention, which work there.
            self._replace(channel, message_ts, Message("Confirmation expired; nothing was done", tone="warning",
                                                       lines=(f"ask again with the button, or mention fluxbot in this "
                                                              f"thread: `@fluxbot {row['text']}`",)),
                          actions=[{"type": "button", "action_id": "fluxbot_retry", "value": row["text"][:2000],
                                    "text": {"type": "plain_text", "text": "Ask again"}}])
            return
        if outcome == "cancelled":
            self._replace(channel, message_ts, Message(f"Cancelled by <@{user}>; nothing was done", tone="info"))
            return
        self._replace(channel, message_ts, Message(f"Confirmed by <@{user}>", lines=(f"`{row['text']}`",), tone="info"))
        groups = self.directory.groups_of(user, self.bot.policy.groups)
        if self.queue_only:
            self._queue(user, row["text"], channel, row["thread_ts"], groups, confirmed=True)
            return
        response = self.bot.respond(Request(row["text"], user, channel, groups, confirm_risky=True, confirmed=True,
                                            thread_ts=row["thread_ts"]))
        self._deliver(response, row["text"], user, channel, row["thread_ts"])

    # Slack Web API ------------------------------------------------------------------------------

    def post(self, channel: str, message: Message, thread_ts: str | None = None, *,
             actions: list[dict[str, Any]] | None = None, note: str = "", notify: tuple[str, ...] = (),
             when_posted: tuple[Any, ...] = ()) -> str | None:
        """Post a message (paged if long) through the outbox: the first page's ts, or None when Slack has
        not taken it yet (it is retried, bounded, by `recover`).

        `notify`: user groups this message may really mention (a change request's approvers).
        `when_posted`: ("gate", forge, number, head) records a change request's card once it is posted.
        """
        if note:
            message = _with_note(message, note)
        pages = to_pages(message, actions, self.directory, frozenset(notify))
        record = json.dumps(when_posted) if when_posted else ""
        ids = self.store.queue_posts(0, [(channel, thread_ts, _payload(page), record if i == 0 else "")
                                         for i, page in enumerate(pages)])
        delivered = self.flush(ids)
        return delivered.get(ids[0])

    def flush(self, ids: list[int] | None = None, now: float | None = None) -> dict[int, str]:
        """Deliver queued posts in order (a thread's later post waits for its earlier one); {id: ts} delivered."""
        now = self.clock() if now is None else now
        delivered: dict[int, str] = {}
        blocked: set[tuple[str, str]] = set()
        for row in self.store.pending_posts(ids):
            thread = (row["channel"], row["thread_ts"] or "")
            if thread in blocked:
                continue
            if row["state"] != "pending" or (ids is None and row["next_try"] > now) or not self.store.claim_post(row["id"]):
                blocked.add(thread)
                continue
            payload = json.loads(row["payload"])
            try:
                ts = self._post_page(row["channel"], row["thread_ts"], payload["blocks"], payload["text"])
            except SlackApiError as error:
                code = str(error.response.get("error", "unknown_error"))
                self.problems[row["channel"]] = code
                blocked.add(thread)
                log.error("chat.postMessage to %s failed: %s", row["channel"], code)
                if code in _UNREACHABLE:
                    log.error("invite fluxbot to channel %s (or check its ID) so it can post there", row["channel"])
                if self.store.post_failed(row["id"], now, self.max_post_attempts):
                    log.error("gave up posting message %s to %s after %d attempts", row["id"], row["channel"],
                              self.max_post_attempts)
                continue
            except Exception as error:  # Slack unreachable: keep it for the next round
                log.error("chat.postMessage to %s failed: %s", row["channel"], error.__class__.__name__)
                blocked.add(thread)
                self.store.post_failed(row["id"], now, self.max_post_attempts)
                continue
            self.problems.pop(row["channel"], None)
            self.store.post_delivered(row["id"], ts)
            delivered[row["id"]] = ts
            self._posted(row, ts)
        return delivered

    def _posted(self, row: Any, ts: str) -> None:
        """Record what depended on a post (a change request's card) once Slack took it."""
        if not row["on_posted"]:
            return
        kind, *rest = json.loads(row["on_posted"])
        if kind == "gate":
            forge, number, head = rest
            gate = self.store.gate(forge, int(number))
            if gate is not None and gate["head"] == head and not gate["request_ts"]:
                self.store.gate_request_posted(forge, int(number), head, row["channel"], ts)

    def _post_page(self, channel: str, thread_ts: str | None, blocks: list[dict[str, Any]], text: str) -> str:
        self.pacer.wait(channel)
        reply = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks,
                                             unfurl_links=False, unfurl_media=False)
        return str(reply["ts"])

    def _post_now(self, channel: str, message: Message) -> str | None:
        """Post at once, without retries (the "asked" post: if it fails, the user is told instead)."""
        page = to_pages(message, None, self.directory)[0]
        try:
            return self._post_page(channel, None, page.blocks, page.text)
        except SlackApiError as error:
            code = str(error.response.get("error", "unknown_error"))
            self.problems[channel] = code
            log.error("chat.postMessage to %s failed: %s", channel, code)
            return None

    def _replace(self, channel: str, ts: str | None, message: Message,
                 actions: list[dict[str, Any]] | None = None) -> None:
        if not ts:
            return
        page = to_pages(message, actions, self.directory)[0]
        try:
            self.client.chat_update(channel=channel, ts=ts, text=page.text, blocks=page.blocks)
        except SlackApiError as error:
            log.error("chat.update failed: %s", error.response.get("error"))

    def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        """Only `user` sees it, in the thread where they clicked (nobody named in it is notified)."""
        try:
            self.client.chat_postEphemeral(channel=channel, user=user, text=to_mrkdwn(text, self.directory),
                                           thread_ts=thread_ts)
        except SlackApiError as error:
            log.error("chat.postEphemeral failed: %s", error.response.get("error"))


def _unknown_groups(response: Response, unknown: frozenset[str]) -> Response:
    """A refusal that may be due to a group Slack could not list says so (and that asking again may work)."""
    if not unknown:
        return response
    note = (f"Slack could not be asked who is in {', '.join(f'<!subteam^{g}>' for g in sorted(unknown))} just now; "
            "if you are, ask again in a minute")
    response.messages = [dataclasses.replace(m, lines=m.lines + (note,)) if m.tone == "error" else m
                         for m in response.messages]
    return response


def _is_read(text: str) -> bool:
    """A command that only reads (status, versions, diff, help...): no permission rule names it."""
    try:
        spec, _command = parse(text)
    except CommandError:
        return False
    return spec.action is None


def _code(error: Exception) -> str:
    return str(error.response.get("error")) if isinstance(error, SlackApiError) else error.__class__.__name__


def _payload(page: Page) -> dict[str, Any]:
    return {"blocks": page.blocks, "text": page.text}


def _with_note(message: Message, note: str) -> Message:
    return Message(message.title, message.lines, message.fields, message.table, message.links,
                   (message.context + note).strip(), message.tone)


def _where(body: dict[str, Any]) -> tuple[str, str | None]:
    """The channel and thread of a clicked button (block_actions payload: `container`, `message`)."""
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
    thread_ts = container.get("thread_ts") or (body.get("message") or {}).get("thread_ts")
    return channel, thread_ts


def _authorized_user(body: dict[str, Any]) -> str:
    for authorization in body.get("authorizations") or []:
        if authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return ""
