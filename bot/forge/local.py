"""The embedded forge: a PR is a branch pushed to the repo plus a record in the store.

It lets the whole flow (promote, review, merge) run on a laptop with no credentials.
"""
from __future__ import annotations

import json
from pathlib import Path

from bot.forge.base import ForgeError
from bot.store import IntegrityError, Row, Store, now
from bot.git.workspace import Workspace
from commands.model import ChangePlan, PullRequest


class LocalForge:
    name = "local"

    def __init__(self, store: Store, workspace: Workspace) -> None:
        self.store = store
        self.workspace = workspace
        self._base_url = f"local://{Path(workspace.origin).name}"

    def _pr(self, row: Row) -> PullRequest:
        return PullRequest(
            number=row["number"],
            title=row["title"],
            url=f"{self._base_url}/pull/{row['number']}",
            branch=row["branch"],
            cluster=row["cluster"],
            kind=row["kind"],
            state=row["state"],
            author=row["author"],
            created=row["created"],
            head=row["head"],
            merge_commit=row["merge_commit"] or "",
            opened_by="fluxbot",
        )

    def open_prs(self) -> list[PullRequest]:
        return [self._pr(r) for r in self.store.query("SELECT * FROM local_prs WHERE state = 'open' ORDER BY number")]

    def get(self, number: int) -> PullRequest | None:
        rows = self.store.query("SELECT * FROM local_prs WHERE number = ?", number)
        return self._pr(rows[0]) if rows else None

    def find_open(self, branch: str) -> PullRequest | None:
        rows = self.store.query("SELECT * FROM local_prs WHERE branch = ? AND state = 'open'", branch)
        return self._pr(rows[0]) if rows else None

    def create(self, plan: ChangePlan, head: str, requester: str) -> PullRequest:
        try:
            with self.store.transaction() as db:
                number = db.insert(
                    "INSERT INTO local_prs (title, body, state, author, cluster, kind, branch, head, labels, created, updated)"
                    " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (plan.title, plan.body, requester, plan.cluster, plan.kind, plan.branch, head,
                     json.dumps(plan.labels), now(), now()), key="number")
        except IntegrityError:
            raise ForgeError(f"`{plan.cluster}` already has an open change") from None
        pr = self.get(int(number))
        assert pr is not None
        return pr

    def body(self, number: int) -> str:
        rows = self.store.query("SELECT body FROM local_prs WHERE number = ?", number)
        return rows[0]["body"] if rows else ""

    def merge(self, number: int, requester: str) -> PullRequest:
        pr = self._open(number)
        commit = self.workspace.merge(pr.branch, f"Merge fluxbot PR #{number}: {pr.title}\n\nMerged-by: {requester}\n")
        self._finish(number, "merged", commit)
        self.workspace.delete_branch(pr.branch)
        return self.get(number)  # type: ignore[return-value]

    def close(self, number: int, requester: str) -> PullRequest:
        pr = self._open(number)
        self._finish(number, "closed", None)
        self.workspace.delete_branch(pr.branch)
        return self.get(number)  # type: ignore[return-value]

    def mark_stale(self, number: int, requester: str) -> PullRequest:
        """A PR that can never merge (main moved the same lines): closed as `stale`, its branch deleted."""
        pr = self._open(number)
        self._finish(number, "closed", None)
        with self.store.transaction() as db:
            row = db.execute(f"SELECT labels FROM local_prs WHERE number = ?{db.lock}", (number,)).fetchone()
            labels = json.loads(row["labels"] or "[]") + ["stale"]
            db.execute("UPDATE local_prs SET labels = ? WHERE number = ?", (json.dumps(labels), number))
        self.workspace.delete_branch(pr.branch)
        return self.get(number)  # type: ignore[return-value]

    def _open(self, number: int) -> PullRequest:
        pr = self.get(number)
        if pr is None or pr.state != "open":
            raise ForgeError(f"PR #{number} is not open")
        return pr

    def _finish(self, number: int, state: str, commit: str | None) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE local_prs SET state = ?, merge_commit = ?, updated = ? WHERE number = ?",
                (state, commit, now(), number),
            )
