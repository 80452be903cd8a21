"""The HTTP server (waitress): Slack's `/slack/events` (Bolt's WSGI adapter), `/github/webhook`,
`/healthz` (the process is up), `/readyz` (store, forge and Slack usable) and `/metrics`."""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from prometheus_client import make_wsgi_app
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.metrics import REGISTRY, SLACK_RESPONSE

log = logging.getLogger(__name__)

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


def health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return _reply(start_response, "200 OK", "ok\n")


class Readiness:
    """`/readyz`: every probe answers, cached briefly so probes do not hammer GitHub or Slack."""

    def __init__(self, probes: dict[str, Probe], ttl: float = 30.0) -> None:
        self._probes = probes
        self._ttl = ttl
        self._cached: tuple[float, dict[str, str]] | None = None

    def results(self) -> dict[str, str]:
        if self._cached and time.monotonic() - self._cached[0] < self._ttl:
            return self._cached[1]
        results = {}
        for name, probe in self._probes.items():
            try:
                results[name] = probe() or "ok"
            except Exception as error:  # a probe failing is an answer, not a crash
                results[name] = f"failed: {error.__class__.__name__}"
        self._cached = (time.monotonic(), results)
        return results

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        results = self.results()
        ready = all(v == "ok" for v in results.values())
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
    routes: dict[str, WsgiApp] = {
        "/healthz": health,
        "/readyz": Readiness(probes or {}),
        "/metrics": make_wsgi_app(REGISTRY),
    }
    if slack_app is not None:
        routes["/slack/events"] = timed(SlackRequestHandler(slack_app))
    if webhook is not None:
        routes["/github/webhook"] = webhook
    return create_server(wsgi_app(routes), host=host, port=port, threads=threads, ident="fluxbot")
