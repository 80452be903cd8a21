"""Leader election on the store: work that must run once (reconcile follows, gate sweeps, retention)
runs on the replica holding the `leader` lease. On SQLite, one process, that is always this one.

The lease is renewed every third of its time to live; a replica that misses renewals (dead, cut
off from the database) loses it after `ttl` seconds and another takes it with a higher fencing
token. Writes that must not be doubled are conditional in the store (a follow ends once, a gate is
decided once), so a deposed leader that has not noticed yet cannot repeat them.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from bot.store import Store, StoreUnavailable

log = logging.getLogger(__name__)

LEASE = "leader"


class Leadership:
    def __init__(self, store: Store, on_elected: Callable[[], None] = lambda: None,
                 on_deposed: Callable[[], None] = lambda: None, ttl: float = 15.0, holder: str = "") -> None:
        self.store = store
        self.holder = holder or store.owner  # this process, as it claims requests: host/pid
        self.ttl = ttl
        self.token: int | None = None
        self._on_elected, self._on_deposed = on_elected, on_deposed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leadership", daemon=True)

    @property
    def held(self) -> bool:
        return self.token is not None

    def start(self) -> Leadership:
        self.renew()
        self._thread.start()
        return self

    def renew(self) -> None:
        """Take or keep the lease; call the hooks when that changes."""
        try:
            token = self.store.lead(LEASE, self.holder, self.ttl, time.time())
        except StoreUnavailable as error:
            log.warning("cannot renew leadership: %s", error)
            token = None  # the lease runs out on its own: step down before another takes it
        was, self.token = self.token, token
        if token is not None and was != token:
            log.info("leading (token %d)", token)
            self._on_elected()
        elif token is None and was is not None:
            log.info("no longer leading")
            self._on_deposed()

    def stop(self) -> None:
        """Step down at once, so another replica need not wait for the lease to run out."""
        self._stop.set()
        self._thread.join(self.ttl)
        if self.token is not None:
            try:
                self.store.resign(LEASE, self.holder)
            except StoreUnavailable:
                pass
            self.token = None
            self._on_deposed()

    def _run(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            self.renew()
