"""Retention (#20): the audit, the journal and delivery IDs do not grow forever; the audit is kept longest.
On SQLite and on PostgreSQL (#19)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.config import load_settings
from bot.store import Retention, Store


def _aged(store: Store, table: str, column: str, days: float) -> None:
    """Backdate every row of `table` by `days` (what a long-running install accumulates)."""
    at = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="seconds")
    store.query(f"UPDATE {table} SET {column} = ?", at)


def test_old_rows_go_by_age_the_audit_stays_longest_and_the_journal_is_never_cut(store_url: str) -> None:
    store = Store(store_url)
    answered = store.begin_request("U1", "status", "C1", "1.1", [], False, 0.0)
    store.finish_request(answered)
    running = store.begin_request("U1", "promote v1 to a", "C1", "1.2", [], False, 0.0)  # still in the journal
    store.first_delivery("github", "d1")
    store.audit("U1", "status", "ok")
    for table, column in (("requests", "created"), ("deliveries", "at"), ("audit", "at")):
        _aged(store, table, column, 40)

    deleted = store.prune(Retention())
    assert deleted == {"audit": 0, "requests": 1, "deliveries": 1, "outbox": 0}
    assert [r["id"] for r in store.query("SELECT id FROM requests")] == [running]
    assert len(store.audit_log()) == 1  # 40 days is well inside the audit's two years
    assert store.first_delivery("github", "d1")  # forgotten: a redelivery this late is new work

    _aged(store, "audit", "at", 800)
    assert store.prune(Retention())["audit"] == 1 and store.audit_log() == []


def test_rows_beyond_the_size_cap_go_oldest_first(store_url: str) -> None:
    store = Store(store_url)
    for n in range(5):
        store.finish_request(store.begin_request("U1", f"status {n}", "C1", f"1.{n}", [], False, 0.0))
        store.first_delivery("slack", f"e{n}")
    deleted = store.prune(Retention(max_rows=2))
    assert deleted == {"audit": 0, "requests": 3, "deliveries": 3, "outbox": 0}
    assert [r["text"] for r in store.query("SELECT text FROM requests ORDER BY id")] == ["status 3", "status 4"]


def test_retention_is_configured_in_fluxbot_yaml(tmp_path: Path) -> None:
    config = tmp_path / "fluxbot.yaml"
    config.write_text("retention:\n  audit_days: 3650\n  requests_days: 7\n")
    assert load_settings(str(config)).retention == Retention(audit_days=3650, requests_days=7)
    assert load_settings(None).retention == Retention()


def test_delivered_posts_go_with_their_requests_and_undelivered_ones_stay(store_url: str) -> None:
    """#16 left the outbox growing forever; a post still to deliver is never deleted."""
    store = Store(store_url)
    request = store.begin_request("U1", "status", "C1", "1.1", [], False, 0.0)
    posted, pending, abandoned = store.queue_posts(request, [("C1", "1.1", {"text": str(n)}, "") for n in range(3)],
                                                   finished=True)
    store.post_delivered(posted, "1.2")
    store.post_failed(abandoned, now=0.0, max_attempts=1)
    _aged(store, "outbox", "created", 40)
    assert store.prune(Retention())["outbox"] == 2
    assert [r["id"] for r in store.query("SELECT id FROM outbox")] == [pending]
    store.close()
