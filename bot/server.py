"""The HTTP server (waitress): Slack's `/slack/events` (Bolt's WSGI adapter), `/github/webhook`,
`/healthz` (the process is up), `/readyz` (it can take requests; outages in the body) and `/metrics`."""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable

from prometheus_client import make_wsgi_app
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress import wasyncore
from waitress.server import create_server

from bot.metrics import DEPENDENCY_UP, HTTP_REFUSED, REGISTRY, SLACK_RESPONSE

log = logging.getLogger(__name__)

# Slack's payloads are small (a slash command or an interaction is a few KB; a message's blocks are at
# most 50 and its text 40,000 characters: https://api.slack.com/reference/block-kit/blocks), and
# GitHub caps webhook payloads at 25 MB but ours (pull_request, review, status, check_run) are tens of
# KB. A body above this is refused with 413 before anything reads it.
MAX_BODY = 1024 * 1024
MAX_WEBHOOK_BODY = 5 * 1024 * 1024  # GitHub's pull request payloads are tens of KB; bodies are capped at 65,536 chars

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Probe = Callable[[], str]  # '' when fine, else what is wrong


def _reply(start_response: Callable[..., Any], status: str, body: str, kind: str = "text/plain") -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", f"{kind}; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def wsgi_app(routes: dict[str, WsgiApp]) -> WsgiApp:
    """Route by exact path; unknown paths get 404."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = routes.get(environ.get("PATH_INFO", ""))
        if handler is None:
            return _reply(start_response, "404 Not Found", "not found\n")
        return handler(environ, start_response)

    return app


def limited(app: WsgiApp, limit: int = MAX_BODY) -> WsgiApp:
    """413 for a declared body above `limit`, before the app (Bolt reads and logs whole bodies)."""
    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _reply(start_response, "400 Bad Request", "bad Content-Length\n")
        if length > limit:
            HTTP_REFUSED.labels(reason="too_large").inc()
            log.warning("refused a request body of %d bytes to %s (at most %d)", length, environ.get("PATH_INFO"), limit)
            return _reply(start_response, "413 Payload Too Large", f"request body too large (at most {limit} bytes)\n")
        return app(environ, start_response)

    return wrapper


def health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return _reply(start_response, "200 OK", "ok\n")


class Readiness:
    """`/readyz`: ready means "can take requests": the listener answers and the `critical` probes
    (the store) pass. The other probes (GitHub, Slack, clusters) are outages fluxbot rides out with
    its journal: they show in the body and in `fluxbot_dependency_up`, never as NotReady. They run
    in the background (at most every `ttl` seconds), so a hanging GitHub cannot time the probe out."""

    def __init__(self, probes: dict[str, Probe], ttl: float = 30.0, critical: tuple[str, ...] = ("store",)) -> None:
        self._critical = {k: v for k, v in probes.items() if k in critical}
        self._others = {k: v for k, v in probes.items() if k not in critical}
        self._ttl = ttl
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._refreshing = False
        self._results: dict[str, str] = {name: "unknown: first check running" for name in self._others}

    @staticmethod
    def _run(probe: Probe) -> str:
        try:
            return probe() or "ok"
        except Exception as error:  # a probe failing is an answer, not a crash
            detail = str(error).splitlines()[0][:200] if str(error) else ""
            return f"failed: {error.__class__.__name__}" + (f": {detail}" if detail else "")

    def _refresh(self) -> None:
        try:
            results = {name: self._run(probe) for name, probe in self._others.items()}
            for name, result in results.items():
                DEPENDENCY_UP.labels(dependency=name).set(1 if result == "ok" else 0)
            with self._lock:
                self._results = results
                self._checked = time.monotonic()
        finally:
            with self._lock:
                self._refreshing = False

    def results(self, wait: bool = False) -> tuple[bool, dict[str, str]]:
        """(ready, what each probe says); starts a background refresh of the others when stale."""
        with self._lock:
            stale = time.monotonic() - self._checked >= self._ttl and not self._refreshing
            if stale:
                self._refreshing = True
        if stale:
            worker = threading.Thread(target=self._refresh, name="readyz", daemon=True)
            worker.start()
            if wait:
                worker.join()
        critical = {name: self._run(probe) for name, probe in self._critical.items()}
        with self._lock:
            others = dict(self._results)
        return all(v == "ok" for v in critical.values()), {**critical, **others}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ready, results = self.results()
        return _reply(start_response, "200 OK" if ready else "503 Service Unavailable", json.dumps(results) + "\n",
                      "application/json")


def timed(app: WsgiApp) -> WsgiApp:
    """Observe how long Slack waits for our answer (the ack)."""
    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start = time.perf_counter()
        try:
            return list(app(environ, start_response))
        finally:
            SLACK_RESPONSE.observe(time.perf_counter() - start)

    return wrapper


def build_server(slack_app: Any, host: str, port: int, threads: int = 8, webhook: WsgiApp | None = None,
                 probes: dict[str, Probe] | None = None) -> Any:
    """A waitress server with fluxbot's routes; `.run()` serves, `.close()` stops."""
    readiness = Readiness(probes or {})
    readiness.results()  # the first check of the dependencies starts now, in the background
    routes: dict[str, WsgiApp] = {
        "/healthz": health,
        "/readyz": readiness,
        "/metrics": make_wsgi_app(REGISTRY),
    }
    if slack_app is not None:
        routes["/slack/events"] = limited(timed(SlackRequestHandler(slack_app)))
    if webhook is not None:
        routes["/github/webhook"] = limited(webhook, MAX_WEBHOOK_BODY)
    # waitress refuses (413) a declared or chunked body above the largest limit before buffering it.
    # poll(), not waitress's default select(): select() fails outright once any descriptor of the
    # process is numbered 1024 or more, and a busy process gets there.
    return create_server(wsgi_app(routes), host=host, port=port, threads=threads, ident="fluxbot",
                         max_request_body_size=MAX_WEBHOOK_BODY, asyncore_use_poll=True)


def stop_server(server: Any, loop: threading.Thread, timeout: float = 5.0) -> None:
    """Stop a waitress server that `loop` runs: no new connections, requests in flight answered, then
    the loop closes its own sockets. Closing them from this thread races the loop's select() (EBADF)."""
    server.accepting = False  # the listener stops being readable: nothing new is accepted
    server.task_dispatcher.shutdown(cancel_pending=False, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(getattr(channel, "total_outbufs_len", 0)
                                              for channel in list(server._map.values())):
        time.sleep(0.02)  # answers already computed are still being written by the loop
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))  # runs in the loop; an empty map ends it
    loop.join(timeout)
