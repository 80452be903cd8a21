"""`rollback <cluster> [from <version>] [to <version>] [because <reason>]`: an emergency PR back to an older pin.

A rollback never moves a cluster forward. Without `to`, the target is the newest release older
than the current pin that the cluster ran before (from its cluster file's history), else the next
older release. `from` fixes the pin the rollback was offered against (buttons, confirmations,
recovered requests): if the pin moved since, the rollback is refused instead of worked out again.
"""
from __future__ import annotations

from dataclasses import dataclass

from commands.args import check_name, resolve_cluster, resolve_version
from commands.bounds import one_line_reason
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, Cluster, CommandError, Version
from commands.pinchange import branch_name, ensure_no_open_change, is_newer, plan_pin_change, promotable_pin
from commands.repo import RepoSnapshot, parse_version


@dataclass(frozen=True)
class Rollback:
    cluster: str
    version: str = ""  # empty: the newest older release the cluster ran before
    reason: str = ""
    current: str = ""  # `from`: the pin the rollback was offered against; empty: whatever it is now


def parse(words: list[str]) -> Rollback:
    lowered = [w.lower() for w in words]
    reason = ""
    if "because" in lowered:
        at = lowered.index("because")
        reason = one_line_reason(" ".join(words[at + 1 :]))
        if not reason:
            raise SPEC.usage_error("`because` needs a reason after it")
        words, lowered = words[:at], lowered[:at]
    if not words:
        raise SPEC.usage_error("rollback takes one cluster, optionally `to <version>` and `because <reason>`")
    cluster, rest = check_name(words[0], "cluster"), list(zip(lowered[1::2], words[2::2]))
    if len(words) % 2 == 0:
        raise SPEC.usage_error("rollback takes one cluster, optionally `from <version>`, `to <version>` and `because <reason>`")
    options: dict[str, str] = {}
    for key, value in rest:
        if key not in ("from", "to") or key in options:
            raise SPEC.usage_error(f"`{key}` is not understood here")
        options[key] = check_name(value, "version")
    return Rollback(cluster, options.get("to", ""), reason, options.get("from", ""))


def run(cmd: Rollback, ctx: Context) -> tuple[ChangePlan, ...]:
    cluster = resolve_cluster(ctx.repo, cmd.cluster)
    current = _current(cluster, cmd)
    target = resolve_version(ctx.repo, cmd.version) if cmd.version else rollback_target(ctx.repo, cluster, current)
    if target.tag == current:
        raise CommandError(f"`{cluster.name}` is already pinned to `{current}`", "nothing to roll back")
    if cmd.version and not is_newer(current, target.tag):
        raise CommandError(
            f"`{target.tag}` is newer than `{current}`, which `{cluster.name}` runs now",
            f"a rollback never moves forward; to move forward, use `promote {target.tag} to {cluster.name}`",
        )
    ensure_no_open_change(ctx, cluster, branch_name("rollback", cluster.name, target.tag))
    return (plan_pin_change(ctx, cluster, current, target, "rollback", cmd.reason),)


def _current(cluster: Cluster, cmd: Rollback) -> str:
    current = promotable_pin(cluster)
    if cmd.current and parse_version(cmd.current) != parse_version(current):
        raise CommandError(
            f"`{cluster.name}` is pinned to `{current}` now, not `{cmd.current}` as when this rollback was offered",
            f"nothing was changed; check `status {cluster.name}`, then ask again (`rollback {cluster.name}`)",
        )
    return current


def rollback_target(repo: RepoSnapshot, cluster: Cluster, current: str) -> Version:
    """The newest release older than `current` that the cluster ran before, else the next older one."""
    now = parse_version(current)
    if now is None:
        raise CommandError(
            f"`{cluster.name}` is pinned to `{current}`, which is no semantic version, so no release is older",
            f"name the release: `rollback {cluster.name} to <version>`",
        )
    older = [v for v in repo.versions if parse_version(v.tag) < now]
    if not older:
        raise CommandError(
            f"there is no release older than `{current}` to roll `{cluster.name}` back to",
            "a rollback never moves forward; `versions` lists the releases",
        )
    ran = {parse_version(pin.value) for _, pin in repo.pin_history(cluster) if pin.kind == "tag"}
    return ([v for v in older if parse_version(v.tag) in ran] or older)[-1]


def fixed_text(cmd: Rollback, ctx: Context) -> str:
    """The request with its from/to fixed now, so a later run (confirm, recovery) acts on this decision."""
    cluster = resolve_cluster(ctx.repo, cmd.cluster)
    current = _current(cluster, cmd)
    target = cmd.version or rollback_target(ctx.repo, cluster, current).tag
    return f"rollback {cluster.name} from {current} to {target}" + (f" because {cmd.reason}" if cmd.reason else "")


SPEC = CommandSpec(
    verb="rollback",
    usage="rollback <cluster> [to <version>] [because <reason>]",
    summary="Open an emergency PR that pins a cluster back to an older release (never a newer one).",
    parse=parse,
    run=run,
    examples=("rollback prod-eu", "rollback prod-eu to v0.2.0 because nginx crashloop"),
    action="rollback",
    proposes=True,
    targets=lambda cmd: (cmd.cluster,),
    fixed=fixed_text,
)
