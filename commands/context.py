"""What a command is given to plan with, and how a command describes itself to the registry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from commands.args import check_name
from commands.model import AuditEntry, CommandError, Outcome, PullRequest
from commands.repo import RepoSnapshot


@dataclass(frozen=True)
class Context:
    """The repo snapshot, who asks, and the changes already open; all a plan depends on."""

    repo: RepoSnapshot
    requester: str
    open_prs: tuple[PullRequest, ...] = ()
    today: str = ""  # ISO date, for changelog headings
    freezes: dict[str, tuple[str, str]] = field(default_factory=dict)  # target -> (reason, who)
    audit_log: Callable[[], Sequence[AuditEntry]] = lambda: ()  # read only by `audit`
    live: Callable[[str], dict[str, Any] | None] = lambda cluster: None  # Flux objects on the cluster, if reachable
    release_requires_green: str = ""  # a cluster tracking main that must reconcile cleanly before `release`

    def open_change_for(self, cluster: str) -> PullRequest | None:
        return next((pr for pr in self.open_prs if pr.cluster == cluster and pr.state == "open"), None)


@dataclass(frozen=True)
class CommandSpec:
    """One chat command: its grammar, its documentation and the pure function that plans it."""

    verb: str
    usage: str
    summary: str
    parse: Callable[[list[str]], Any]
    run: Callable[[Any, Context], Outcome]
    examples: tuple[str, ...] = ()
    action: str | None = None  # the permission a write needs; None for read-only commands
    targets: Callable[[Any], tuple[str, ...]] = lambda command: ()  # clusters it would change
    # It proposes a change (opens a PR): safe to carry out later, so it waits out a forge outage.
    # Merges, closes and freezes are not: nobody should find them done an hour after asking.
    proposes: bool = False
    # The request with its decision fixed (`rollback demo from v0.3.0 to v0.2.0`): what a
    # confirmation, a button or a recovered request runs later, refused if the repo moved since.
    fixed: Callable[[Any, Context], str] | None = None

    def optional_cluster(self, words: list[str]) -> str:
        """The one cluster a command may name (`status [cluster]`), or '' when none is given."""
        if len(words) > 1:
            raise self.usage_error(f"{self.verb} takes at most one cluster")
        return check_name(words[0], "cluster") if words else ""

    def one_cluster(self, words: list[str]) -> str:
        """The one cluster a command needs (`unlock <cluster>`)."""
        if len(words) != 1:
            raise self.usage_error(f"{self.verb} takes one cluster")
        return check_name(words[0], "cluster")

    def usage_error(self, what: str) -> CommandError:
        return CommandError(what, f"usage: `{self.usage}`" + (f", for example `{self.examples[0]}`" if self.examples else ""))
