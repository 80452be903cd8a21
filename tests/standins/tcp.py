"""A TCP listener on 127.0.0.1 that accepts connections and never answers: a stalled origin, or a
host that repo content must never reach (it counts the connections made to it)."""
from __future__ import annotations

import socket
import threading


class SilentListener:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.connected = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)  # held open, never answered
            self.connected.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()
