"""A Slack Socket Mode stand-in: the WebSocket end that `apps.connections.open` hands out.

Like bolt-python's mock Socket Mode server: it greets a client with `hello`, sends it envelopes
(`slash_commands`, `events_api`, `interactive`) and records the acknowledgements it sends back.
slack_sdk's built-in client speaks plain `ws://` to a port other than 443 (its testing path).
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from websockets.sync.server import ServerConnection, serve


class SocketModeStandIn:
    def __init__(self) -> None:
        self.acks: list[dict[str, Any]] = []
        self._clients: list[ServerConnection] = []
        self._lock = threading.Lock()
        self.server = serve(self._session, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        port = self.server.socket.getsockname()[1]
        return f"ws://127.0.0.1:{port}/link/?ticket=standin"

    def stop(self) -> None:
        self.server.shutdown()

    def _session(self, client: ServerConnection) -> None:
        client.send(json.dumps({"type": "hello", "num_connections": 1,
                                "debug_info": {"host": "standin", "approximate_connection_time": 3600},
                                "connection_info": {"app_id": "A111"}}))
        with self._lock:
            self._clients.append(client)
        for message in client:
            with self._lock:
                self.acks.append(json.loads(message))

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._clients:
            if time.monotonic() > deadline:
                raise AssertionError("no Socket Mode client connected")
            time.sleep(0.02)

    def send(self, kind: str, payload: dict[str, Any]) -> str:
        """Send one envelope to the connected client; its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "payload": payload, "type": kind,
                    "accepts_response_payload": kind == "slash_commands"}
        with self._lock:
            client = self._clients[-1]
        client.send(json.dumps(envelope))
        return envelope_id

    def acked(self, envelope_id: str) -> bool:
        with self._lock:
            return any(ack.get("envelope_id") == envelope_id for ack in self.acks)
