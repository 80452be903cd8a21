"""`unlock <cluster>`: an admin clears a stale one-change-per-cluster lock by closing its PR."""
from __future__ import annotations

from commands.context import CommandSpec, Context
from commands.model import CommandError, PrAction


def parse(words: list[str]) -> str:
    return SPEC.one_cluster(words)


def run(cluster: str, ctx: Context) -> PrAction:
    pr = ctx.open_change_for(cluster)
    if pr is None:
        raise CommandError(f"`{cluster}` has no open change holding its lock", "nothing to unlock")
    return PrAction("close", pr.number)


SPEC = CommandSpec(
    verb="unlock",
    usage="unlock <cluster>",
    summary="Clear a stale lock: close the open fluxbot PR that holds the cluster's one-change lock.",
    parse=parse,
    run=run,
    examples=("unlock prod-eu",),
    action="unlock",
    targets=lambda cluster: (cluster,),
)
