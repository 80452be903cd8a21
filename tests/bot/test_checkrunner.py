"""PR checks run off the webhook thread, and a newer push supersedes the older run (#18)."""
from __future__ import annotations

import threading

from bot.checkrunner import CheckRunner, RunToken


def test_a_newer_push_stops_the_running_check_before_it_publishes() -> None:
    runner = CheckRunner(workers=2)
    started, release = threading.Event(), threading.Event()
    published: list[str] = []
    threads: list[str] = []

    def slow(token: RunToken) -> None:
        threads.append(threading.current_thread().name)
        started.set()
        release.wait(10)
        token.check()  # between clusters: a superseded run stops here
        published.append(token.head)

    first = runner.submit("pr-7", "a" * 40, slow)
    assert started.wait(10)
    second = runner.submit("pr-7", "b" * 40, lambda token: published.append(token.head))
    second.result(10)
    release.set()
    first.result(10)
    runner.close()
    assert published == ["b" * 40]
    assert threads[0].startswith("pr-check") and threads[0] != threading.current_thread().name


def test_a_queued_check_that_was_superseded_never_starts() -> None:
    runner = CheckRunner(workers=1)
    busy, release = threading.Event(), threading.Event()
    ran: list[str] = []
    runner.submit("pr-1", "1" * 40, lambda token: (busy.set(), release.wait(10)))
    assert busy.wait(10)
    old = runner.submit("pr-2", "a" * 40, lambda token: ran.append(token.head))
    new = runner.submit("pr-2", "b" * 40, lambda token: ran.append(token.head))
    release.set()
    old.result(10), new.result(10)
    runner.close()
    assert ran == ["b" * 40]


def test_the_same_head_twice_runs_once_while_running_and_again_after() -> None:
    runner = CheckRunner(workers=2)
    release = threading.Event()
    ran: list[str] = []

    def work(token: RunToken) -> None:
        ran.append(token.head)
        release.wait(10)

    first = runner.submit("pr-3", "c" * 40, work)
    runner.submit("pr-3", "c" * 40, work).result(10)  # a redelivered webhook: already on it
    release.set()
    first.result(10)
    runner.submit("pr-3", "c" * 40, work).result(10)  # reopened later: checked again
    runner.close()
    assert ran == ["c" * 40, "c" * 40]


def test_a_failing_check_is_logged_and_the_runner_goes_on(caplog) -> None:
    runner = CheckRunner(workers=1)

    def boom(token: RunToken) -> None:
        raise RuntimeError("render exploded")

    runner.submit("pr-4", "d" * 40, boom).result(10)
    done: list[str] = []
    runner.submit("pr-4", "e" * 40, lambda token: done.append(token.head)).result(10)
    runner.close()
    assert done == ["e" * 40]
    assert "check of pr-4" in caplog.text and "render exploded" in caplog.text
