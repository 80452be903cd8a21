"""What every HTTP stand-in shares: its server, and a JSON answer with its status and headers."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any



class StandInServer(ThreadingHTTPServer):
    """A thread per connection, like the real services' front ends, with a real listen backlog:
    socketserver's default of 5 drops connections under a burst (a loaded CI machine, a test that
    fans out), which no real API server does; the kernel retries a dropped SYN after 1, 3, 7 s, and
    clients then time out on the stand-in, not on anything the test is about."""

    request_queue_size = 128
    daemon_threads = True

    def server_activate(self) -> None:
        super().server_activate()
        # serve_forever accepts after select() said "readable"; a connection reset in between leaves a
        # blocking accept() waiting for the next one, and stop() (shutdown) waiting for it forever
        self.socket.setblocking(False)

    def get_request(self):  # type: ignore[no-untyped-def]
        connection, address = self.socket.accept()  # BlockingIOError when nothing is there: skipped
        connection.setblocking(True)
        return connection, address


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)
