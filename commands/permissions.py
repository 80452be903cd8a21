"""Who may do what where: deny by default for writes, reads limited to configured channels.

Pure policy: the Slack adapter supplies the signed user ID, the user's groups and the channel.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Rule:
    """Lets `users` or members of `groups` do `actions` on clusters matching `clusters` globs."""

    actions: tuple[str, ...]
    clusters: tuple[str, ...] = ("*",)
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()  # empty: from any channel

    def covers(self, action: str, cluster: str) -> bool:
        return (action in self.actions or "*" in self.actions) and any(
            fnmatchcase(cluster, glob) for glob in self.clusters
        )

    def admits(self, user: str, groups: frozenset[str], channel: str) -> bool:
        who = user in self.users or bool(groups & set(self.groups))
        return who and (not self.channels or channel in self.channels)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    read_channels: tuple[str, ...] = ("*",)
    trusted: bool = False  # the local shell: its user owns the repo on disk

    @property
    def groups(self) -> set[str]:
        return {g for rule in self.rules for g in rule.groups}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def decide(
    policy: Policy, action: str | None, clusters: tuple[str, ...], user: str, groups: frozenset[str], channel: str
) -> Decision:
    """May `user` (in `groups`, writing in `channel`) run `action` on `clusters`? Says who may if not."""
    if policy.trusted:
        return Decision(True)
    if action is None:
        if any(fnmatchcase(channel, glob) for glob in policy.read_channels):
            return Decision(True)
        where = ", ".join(f"<#{c}>" for c in policy.read_channels) or "no channel"
        return Decision(False, f"fluxbot answers read commands in {where}")
    for cluster in clusters or ("*",):
        covering = [r for r in policy.rules if r.covers(action, cluster)]
        if any(r.admits(user, groups, channel) for r in covering):
            continue
        return Decision(False, _who_may(action, cluster, covering))
    return Decision(True)


def _who_may(action: str, cluster: str, rules: list[Rule]) -> str:
    target = f"`{action}` on `{cluster}`" if cluster != "*" else f"`{action}`"
    if not rules:
        return f"nobody may {target} yet: no permission rule allows it (add one under `permissions.rules` in fluxbot.yaml)"
    people = sorted({f"<@{u}>" for r in rules for u in r.users} | {f"<!subteam^{g}>" for r in rules for g in r.groups})
    channels = sorted({f"<#{c}>" for r in rules for c in r.channels})
    where = f" (from {', '.join(channels)})" if channels else ""
    return f"only {', '.join(people) or 'nobody'} may {target}{where}"
