"""A ServiceNow-like change system on 127.0.0.1: takes change requests, answers their status."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.standins.http import StandInServer, send_json


@dataclass
class ChangeSystem:
    token: str = "cab-token-123456"
    requests: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = StandInServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def decide(self, change_id: str, state: str, by: str) -> None:
        self.states[change_id] = {"state": state, "by": by}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(system: ChangeSystem) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {system.token}"

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorized():
                return self._send(401, {"error": "unauthorized"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            change_id = f"CHG{len(system.requests) + 1:04d}"
            system.requests.append(body)
            system.states[change_id] = {"state": "pending"}
            self._send(201, {"id": change_id, "status_url": f"{system.url}/changes/{change_id}"})

        def do_GET(self) -> None:  # noqa: N802
            if not self._authorized():
                return self._send(401, {"error": "unauthorized"})
            change_id = self.path.rsplit("/", 1)[-1]
            self._send(200, {"id": change_id, **system.states.get(change_id, {"state": "unknown"})})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
