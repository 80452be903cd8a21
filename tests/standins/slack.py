"""A Slack Web API stand-in on 127.0.0.1 that records every call, like bolt-python's mock server.

`slack_sdk`'s `base_url` points here. It answers the methods fluxbot uses the way Slack does,
checks the bot token, can fail a method with a Slack error or a 429 with Retry-After, and also
serves response URLs (`/response/...`) so ephemeral replies are recorded too.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl

from tests.standins.http import send_json


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    received: float = field(default_factory=time.perf_counter)  # for latency benchmarks


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

    def __post_init__(self) -> None:
        self._failures: list[list[Any]] = []  # [method, error, status, headers, times]
        self._ts = 1700000000.000100
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
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
        return [c.params for c in self.of("chat.postMessage")]

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
            self.calls.append(Call(method, params, headers))
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
            self._ts += 1
            ts = f"{self._ts:.6f}"
        if method == "auth.test":
            return 200, {"ok": True, "url": "https://test.slack.example/", "team": "Test", "user": "fluxbot",
                         "team_id": "T111", "user_id": "UBOT", "bot_id": "B111", "is_enterprise_install": False}, {}
        if method == "chat.postMessage":
            return 200, {"ok": True, "channel": params.get("channel"), "ts": ts,
                         "message": {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": "B111"}}, {}
        if method == "chat.update":
            return 200, {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text")}, {}
        if method == "chat.postEphemeral":
            return 200, {"ok": True, "message_ts": ts}, {}
        if method == "usergroups.users.list":
            group = params.get("usergroup")
            if group not in self.usergroups:
                return 200, {"ok": False, "error": "no_such_subteam"}, {}
            return 200, {"ok": True, "users": self.usergroups[group]}, {}
        return 200, {"ok": True}, {}


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
