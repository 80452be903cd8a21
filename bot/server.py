"""The HTTP server: Slack's `/slack/events` (Bolt's WSGI adapter) and `/healthz`, on waitress."""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def wsgi_app(routes: dict[str, WsgiApp]) -> WsgiApp:
    """Route by exact path; unknown paths get 404."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        handler = routes.get(environ.get("PATH_INFO", ""))
        if handler is None:
            return _text(start_response, "404 Not Found", "not found\n")
        return handler(environ, start_response)

    return app


def health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return _text(start_response, "200 OK", "ok\n")


def build_server(slack_app: Any, host: str, port: int, threads: int = 8, webhook: WsgiApp | None = None) -> Any:
    """A waitress server with fluxbot's routes; `.run()` serves, `.close()` stops."""
    routes: dict[str, WsgiApp] = {"/healthz": health}
    if slack_app is not None:
        routes["/slack/events"] = SlackRequestHandler(slack_app)
    if webhook is not None:
        routes["/github/webhook"] = webhook
    return create_server(wsgi_app(routes), host=host, port=port, threads=threads, ident="fluxbot")
