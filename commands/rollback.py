"""`rollback <cluster> [to <version>] [because <reason>]`: an emergency PR back to an earlier pin."""
from __future__ import annotations

from dataclasses import dataclass

from commands.args import check_name, resolve_cluster, resolve_version
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, Cluster, CommandError, Version
from commands.pinchange import branch_name, ensure_no_open_change, is_newer, plan_pin_change, promotable_pin


@dataclass(frozen=True)
class Rollback:
    cluster: str
    version: str = ""  # empty: the pin before the current one
    reason: str = ""


def parse(words: list[str]) -> Rollback:
    lowered = [w.lower() for w in words]
    reason = ""
    if "because" in lowered:
        at = lowered.index("because")
        reason = " ".join(words[at + 1 :]).strip()
        if not reason:
            raise SPEC.usage_error("`because` needs a reason after it")
        words, lowered = words[:at], lowered[:at]
    if len(words) == 1:
        return Rollback(check_name(words[0], "cluster"), "", reason)
    if len(words) == 3 and lowered[1] == "to":
        return Rollback(check_name(words[0], "cluster"), check_name(words[2], "version"), reason)
    raise SPEC.usage_error("rollback takes one cluster, optionally `to <version>` and `because <reason>`")


def run(cmd: Rollback, ctx: Context) -> tuple[ChangePlan, ...]:
    cluster = resolve_cluster(ctx.repo, cmd.cluster)
    current = promotable_pin(cluster)
    target = resolve_version(ctx.repo, cmd.version) if cmd.version else previous_pin(ctx, cluster, current)
    if target.tag == current:
        raise CommandError(f"`{cluster.name}` is already pinned to `{current}`", "nothing to roll back")
    if cmd.version and is_newer(target.tag, current):
        raise CommandError(
            f"`{target.tag}` is newer than `{current}`, which `{cluster.name}` runs now",
            f"to move forward, use `promote {target.tag} to {cluster.name}`",
        )
    ensure_no_open_change(ctx, cluster, branch_name("rollback", cluster.name, target.tag))
    return (plan_pin_change(ctx, cluster, current, target, "rollback", cmd.reason),)


def previous_pin(ctx: Context, cluster: Cluster, current: str) -> Version:
    """The tag the cluster was pinned to before `current`, from its back-reference's history."""
    for _commit, pin in ctx.repo.pin_history(cluster):
        if pin.kind == "tag" and pin.value != current:
            version = ctx.repo.version(pin.value)
            if version is None:
                raise CommandError(
                    f"before `{current}`, `{cluster.name}` was pinned to `{pin.value}`, which is no release tag any more",
                    f"name a version: `rollback {cluster.name} to <version>`",
                )
            return version
    raise CommandError(
        f"the history of {cluster.backref.path if cluster.backref else 'its back-reference'} has no pin before `{current}`",
        f"name a version: `rollback {cluster.name} to <version>`",
    )


SPEC = CommandSpec(
    verb="rollback",
    usage="rollback <cluster> [to <version>] [because <reason>]",
    summary="Open an emergency PR that pins a cluster back to its previous (or a named) release.",
    parse=parse,
    run=run,
    examples=("rollback prod-eu", "rollback prod-eu to v0.2.0 because nginx crashloop"),
    action="rollback",
    proposes=True,
    targets=lambda cmd: (cmd.cluster,),
)
