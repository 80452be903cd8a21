"""The forge interface every implementation (local, GitHub) offers to the service."""
from __future__ import annotations

from typing import Protocol

from commands.model import ChangePlan, PullRequest


class ForgeError(Exception):
    """A forge refused or failed; the message is safe to show to the user."""


class ForgeUnavailable(ForgeError):
    """The forge is down, failing on its side (5xx) or rate-limited: the same request can work later."""


class Forge(Protocol):
    name: str

    def open_prs(self) -> list[PullRequest]:
        """Open pull requests that fluxbot made."""
        ...

    def find_open(self, branch: str) -> PullRequest | None:
        """The open PR whose head is `branch`, if any."""
        ...

    def create(self, plan: ChangePlan, head: str, requester: str) -> PullRequest:
        """Open a PR for a branch already pushed at commit `head`."""
        ...

    def merge(self, number: int, requester: str) -> PullRequest: ...

    def close(self, number: int, requester: str) -> PullRequest: ...
