"""A Slack Web API stand-in on 127.0.0.1 that records every call, like bolt-python's mock server
(slackapi/bolt-python tests/mock_web_api_server/).

`slack_sdk`'s `base_url` points here. It answers the methods fluxbot uses the way Slack does,
checks the bot token, can fail a method with a Slack error or a 429 with Retry-After, and also
serves response URLs (`/response/...`) so ephemeral replies are recorded too. Like Slack it:
- refuses what Slack refuses: no text and no blocks (`no_text`), more than 50 blocks, over-long or
  empty text objects, headers that are not plain_text (`invalid_blocks`), text over 40,000
  characters (`msg_too_long`); limits from `bot.slack.limits`, each citing Slack's docs;
- rate-limits chat.postMessage per channel (about 1 a second after a short burst) with 429 and
  Retry-After (https://docs.slack.dev/apis/web-api/rate-limits);
- answers `not_in_channel` for channels the bot is not a member of;
- `encode` turns typed text into what Slack sends an app (entities, auto-linked URLs, mentions).
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable
from urllib.parse import parse_qsl

from bot.slack import limits
from tests.standins.http import StandInServer, send_json

_URL = re.compile(r"(?<![<|\w])((?:https?://)?(?:[a-z0-9-]+\.)+(?:com|org|net|io|dev|example)(?:/[^\s<>]*)?)", re.IGNORECASE)
_CHAT = ("chat.postMessage", "chat.update", "chat.postEphemeral")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    received: float = field(default_factory=time.perf_counter)  # for latency benchmarks
    taken: bool = False  # Slack accepted it (ok: true)


@dataclass
class SlackStandIn:
    token: str = "xoxb-test"
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_in_threads: bool = False  # an outage that hits the replies (thread posts) only
    app_token: str = "xapp-test"  # what `apps.connections.open` (Socket Mode) accepts
    socket_url: str = ""  # the WebSocket URL it hands out (a SocketModeStandIn)
    hold: threading.Event | None = None  # when set to an Event: thread replies wait for it (work in flight)
    held: int = 0  # thread replies that waited on `hold`
    users: dict[str, str] = field(default_factory=dict)  # id -> display name (users.info)
    group_handles: dict[str, str] = field(default_factory=dict)  # id -> handle (usergroups.list)
    not_member_of: set[str] = field(default_factory=set)  # channels the bot was not invited to
    post_burst: int = 5  # chat.postMessage per channel: a short burst, then `posts_per_second`
    posts_per_second: float = limits.POSTS_PER_SECOND_PER_CHANNEL
    rejected: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (method, error, why)

    def __post_init__(self) -> None:
        self._failures: list[list[Any]] = []  # [method, error, status, headers, times]
        self._ts = 1700000000.000100
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._posted: set[tuple[Any, str]] = set()  # (channel, ts) of every message it took
        self.server = StandInServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def start(self) -> "SlackStandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fail(self, method: str, error: str, times: int = 1) -> None:
        self._failures.append([method, error, 200, {}, times])

    def rate_limit(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        self._failures.append([method, "ratelimited", 429, {"Retry-After": str(retry_after)}, times])

    def of(self, method: str) -> list[Call]:
        return [c for c in list(self.calls) if c.method == method]

    def posts(self) -> list[dict[str, Any]]:
        """The messages Slack took (refused and rate-limited calls are in `calls` only)."""
        return [c.params for c in self.of("chat.postMessage") if c.taken]

    def encode(self, text: str, links: bool = True) -> str:
        """Typed text as Slack sends it to an app: `&<>` as entities; with `links` (mentions, and slash
        commands whose `should_escape` is on) URLs auto-linked and known @users/@groups/#channels as markup.

        https://docs.slack.dev/messaging/formatting-message-text#retrieving-messages
        """
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if not links:
            return text

        def link(match: re.Match[str]) -> str:
            typed = match.group(1)
            return f"<{typed}>" if typed.startswith("http") else f"<http://{typed}|{typed}>"

        text = _URL.sub(link, text)
        for uid, name in self.users.items():
            text = re.sub(rf"(?<![\w<|])@{re.escape(name)}\b", f"<@{uid}>", text)
        for gid, handle in self.group_handles.items():
            text = re.sub(rf"(?<![\w<|])@{re.escape(handle)}\b", f"<!subteam^{gid}|@{handle}>", text)
        return re.sub(r"(?<![\w<|])@(here|channel|everyone)\b", r"<!\1>", text)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
        """Poll until `predicate()` is truthy (fluxbot answers from a worker thread)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting; calls so far: {[c.method for c in self.calls]}")

    def answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        hold = self.hold
        if hold is not None and method == "chat.postMessage" and params.get("thread_ts"):
            self.held += 1
            hold.wait(20)
        with self._lock:
            call = Call(method, params, headers)
            self.calls.append(call)
            status, body, extra = self._answer(method, params, headers)
            call.taken = status == 200 and body.get("ok") is True
            if not call.taken and (method in _CHAT or method.startswith("views.")):
                self.rejected.append((method, str(body.get("error")), body.get("response_metadata", {}).get("messages", [])))
            return status, body, extra

    def _answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method.startswith("response/"):
            return 200, {"ok": True}, {}
        for failure in self._failures:
            if failure[0] == method and failure[4] > 0:
                failure[4] -= 1
                return failure[2], {"ok": False, "error": failure[1]}, failure[3]
        if self.fail_in_threads and method == "chat.postMessage" and params.get("thread_ts"):
            return 200, {"ok": False, "error": "internal_error"}, {}
        if method == "apps.connections.open":
            if headers.get("authorization") != f"Bearer {self.app_token}" or not self.socket_url:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": self.socket_url}, {}
        if headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if method in _CHAT:
            if params.get("channel") in self.not_member_of:
                return 200, {"ok": False, "error": "not_in_channel"}, {}
            problems = payload_problems(params)
            if problems:
                error = problems[0][0]
                return 200, {"ok": False, "error": error,
                             "response_metadata": {"messages": [why for _, why in problems]}}, {}
        if method == "views.open":  # https://docs.slack.dev/reference/methods/views.open
            view = params.get("view")
            view = json.loads(view) if isinstance(view, str) else view or {}
            blocks = view.get("blocks") or []
            title = (view.get("title") or {}).get("text") or ""
            problems = [f"[{i}] {why}" for i, block in enumerate(blocks) for why in _block_problems(block)]
            problems += [f"title {title!r} is over 24 characters"] if len(title) > 24 or not title else []
            problems += [f"a select has {len(b['element']['options'])} options" for b in blocks
                         if len((b.get("element") or {}).get("options") or []) > 100]
            if not params.get("trigger_id"):
                return 200, {"ok": False, "error": "invalid_trigger_id"}, {}
            if view.get("type") != "modal" or len(blocks) > limits.MAX_BLOCKS_PER_VIEW or problems:
                return 200, {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}, {}
            return 200, {"ok": True, "view": {"id": "V222", **view}}, {}
        if method == "views.publish":  # https://docs.slack.dev/reference/methods/views.publish
            view = params.get("view")
            view = json.loads(view) if isinstance(view, str) else view or {}
            blocks = view.get("blocks") or []
            problems = [f"{len(blocks)} blocks, at most {limits.MAX_BLOCKS_PER_VIEW}"] if len(blocks) > limits.MAX_BLOCKS_PER_VIEW else []
            problems += [f"[{i}] {why}" for i, block in enumerate(blocks) for why in _block_problems(block)]
            if not params.get("user_id") or view.get("type") != "home" or problems:
                return 200, {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": problems}}, {}
            return 200, {"ok": True, "view": {"id": "V111", **view}}, {}
        if method == "chat.postMessage" and not self._take(str(params.get("channel"))):
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        self._ts += 1
        ts = f"{self._ts:.6f}"
        if method == "auth.test":
            return 200, {"ok": True, "url": "https://test.slack.example/", "team": "Test", "user": "fluxbot",
                         "team_id": "T111", "user_id": "UBOT", "bot_id": "B111", "is_enterprise_install": False}, {}
        if method == "chat.postMessage":
            self._posted.add((params.get("channel"), ts))
            return 200, {"ok": True, "channel": params.get("channel"), "ts": ts,
                         "message": {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": "B111"}}, {}
        if method == "chat.update":
            # https://docs.slack.dev/reference/methods/chat.update : an unknown channel or ts is an error
            if (params.get("channel"), params.get("ts")) not in self._posted:
                return 200, {"ok": False, "error": "message_not_found"}, {}
            return 200, {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text")}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": ts}, {}
        if method == "conversations.info":  # https://docs.slack.dev/reference/methods/conversations.info
            channel = str(params.get("channel"))
            return 200, {"ok": True, "channel": {"id": channel, "is_channel": True, "is_archived": False,
                                                 "is_member": channel not in self.not_member_of}}, {}
        if method == "users.info":
            uid = params.get("user")
            if uid not in self.users:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            return 200, {"ok": True, "user": {"id": uid, "name": self.users[uid].lower(), "real_name": self.users[uid],
                                              "profile": {"display_name": self.users[uid], "real_name": self.users[uid]}}}, {}
        if method == "usergroups.list":
            return 200, {"ok": True, "usergroups": [{"id": gid, "handle": handle, "name": handle}
                                                    for gid, handle in self.group_handles.items()]}, {}
        if method == "usergroups.users.list":
            group = params.get("usergroup")
            if group not in self.usergroups:
                return 200, {"ok": False, "error": "no_such_subteam"}, {}
            return 200, {"ok": True, "users": self.usergroups[group]}, {}
        return 200, {"ok": True}, {}


    def _take(self, channel: str) -> bool:
        """A token bucket per channel: `post_burst` at once, then `posts_per_second`."""
        now = time.monotonic()
        tokens, at = self._buckets.get(channel, (float(self.post_burst), now))
        tokens = min(float(self.post_burst), tokens + (now - at) * self.posts_per_second)
        if tokens < 1:
            self._buckets[channel] = (tokens, now)
            return False
        self._buckets[channel] = (tokens - 1, now)
        return True


def payload_problems(params: dict[str, Any]) -> list[tuple[str, str]]:
    """What Slack would refuse in a chat.postMessage / update / postEphemeral: [(error, why)]."""
    blocks = params.get("blocks")
    text = params.get("text")
    problems: list[tuple[str, str]] = []
    if not blocks and not (text or "").strip():
        return [("no_text", "no text and no blocks")]
    if text is not None and len(text) > limits.MAX_MESSAGE_TEXT:
        problems.append(("msg_too_long", f"text has {len(text)} characters"))
    if blocks:
        if len(blocks) > limits.MAX_BLOCKS_PER_MESSAGE:
            problems.append(("invalid_blocks", f"{len(blocks)} blocks, at most {limits.MAX_BLOCKS_PER_MESSAGE}"))
        for index, block in enumerate(blocks):
            problems += [("invalid_blocks", f"[{index}] {why}") for why in _block_problems(block)]
    return problems


def _text_problems(obj: Any, where: str, maximum: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where} must be a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where} must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or len(text) < limits.MIN_TEXT:
        return [f"{where}: must be more than 0 characters"]
    if len(text) > maximum:
        return [f"{where}: must be less than {maximum + 1} characters"]
    return []


def _block_problems(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "header":
        problems = _text_problems(block.get("text"), "header text", limits.MAX_HEADER_TEXT, plain_only=True)
        shown = (block.get("text") or {}).get("text") or ""
        # plain_text shows markup raw: a mention, channel link or code there is a rendering bug
        if re.search(r"<[@#!]|`", shown):
            problems.append(f"header shows markup raw: {shown[:60]!r}")
        return problems
    if kind == "section":
        if "text" not in block and "fields" not in block:
            return ["section needs text or fields"]
        problems = _text_problems(block["text"], "section text", limits.MAX_SECTION_TEXT) if "text" in block else []
        fields = block.get("fields")
        if fields is not None:
            if not 1 <= len(fields) <= limits.MAX_SECTION_FIELDS:
                problems.append(f"section has {len(fields)} fields")
            for field_ in fields:
                problems += _text_problems(field_, "field", limits.MAX_FIELD_TEXT)
        return problems
    if kind == "context":
        elements = block.get("elements") or []
        problems = [] if 1 <= len(elements) <= limits.MAX_CONTEXT_ELEMENTS else [f"context has {len(elements)} elements"]
        return problems + [p for e in elements if e.get("type") != "image"
                           for p in _text_problems(e, "context element", limits.MAX_TEXT_OBJECT)]
    if kind == "actions":
        elements = block.get("elements") or []
        problems = [] if 1 <= len(elements) <= limits.MAX_ACTION_ELEMENTS else [f"actions has {len(elements)} elements"]
        for element in elements:
            problems += _text_problems(element.get("text"), "button text", limits.MAX_BUTTON_TEXT, plain_only=True)
            if len(str(element.get("value", ""))) > limits.MAX_BUTTON_VALUE:
                problems.append("button value too long")
            confirm = element.get("confirm")
            if confirm:
                problems += _text_problems(confirm.get("text"), "confirm text", limits.MAX_CONFIRM_TEXT)
        return problems
    if kind in ("divider", "image", "rich_text", "file", "input"):
        return []
    return [f"unknown block type {kind!r}"]


def _handler(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                params = json.loads(raw or "{}")
            else:
                params = dict(parse_qsl(raw))
                for key in ("blocks", "attachments"):
                    if isinstance(params.get(key), str):
                        params[key] = json.loads(params[key])
            method = self.path.split("?")[0].removeprefix("/api/").lstrip("/")
            status, body, extra = standin.answer(method, params, {k.lower(): v for k, v in self.headers.items()})
            send_json(self, status, body, extra)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
