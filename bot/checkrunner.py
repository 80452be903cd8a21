"""Runs PR checks off the webhook thread: one worker pool, at most one live run per PR.

A webhook must be answered within GitHub's 10 seconds
(https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks#respond-within-10-seconds),
and a render of a big change takes longer, so the handler only submits. A newer push to the same
PR supersedes the older run: a queued one never starts, a running one stops at its next
`token.check()` (between clusters) and publishes nothing.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)


class Superseded(Exception):
    """A newer push to the same PR came in; this run's result would be stale."""


@dataclass
class RunToken:
    key: str
    head: str
    _cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise Superseded when a newer run for the same PR was submitted."""
        if self._cancelled.is_set():
            raise Superseded(f"{self.key} moved on from {self.head[:12]}")


class CheckRunner:
    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pr-check")
        self._lock = threading.Lock()
        self._current: dict[str, RunToken] = {}

    def submit(self, key: str, head: str, work: Callable[[RunToken], None]) -> Future[None]:
        """Run `work(token)` for PR `key` at `head`; supersedes the PR's older run, if any."""
        token = RunToken(key, head)
        with self._lock:
            older = self._current.get(key)
            if older is not None and older.head != head:
                older._cancelled.set()
            elif older is not None and not older.cancelled:
                return _done()  # the same head again (a redelivery, `reopened`): already on it
            self._current[key] = token
        return self._pool.submit(self._run, token, work)

    def _run(self, token: RunToken, work: Callable[[RunToken], None]) -> None:
        try:
            token.check()
            work(token)
        except Superseded:
            log.info("check of %s at %s superseded by a newer push", token.key, token.head[:12])
        except Exception:
            log.exception("check of %s at %s failed", token.key, token.head[:12])
        finally:
            with self._lock:
                if self._current.get(token.key) is token:
                    del self._current[token.key]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future
