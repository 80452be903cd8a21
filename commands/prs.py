"""`prs`: the open changes fluxbot made."""
from __future__ import annotations

from dataclasses import dataclass

from commands.context import CommandSpec, Context
from commands.model import Link, Message, person


@dataclass(frozen=True)
class Prs:
    pass


def parse(words: list[str]) -> Prs:
    if words:
        raise SPEC.usage_error("prs takes no arguments")
    return Prs()


def run(cmd: Prs, ctx: Context) -> Message:
    open_prs = [pr for pr in ctx.open_prs if pr.state == "open"]
    if not open_prs:
        return Message("No open fluxbot changes")
    rows = [("#", "cluster", "kind", "title", "by")] + [
        (str(pr.number), pr.cluster, pr.kind, pr.title, person(pr.author)) for pr in open_prs
    ]
    links = tuple(Link(f"PR #{pr.number}", pr.url) for pr in open_prs)
    return Message(f"{len(open_prs)} open fluxbot changes", table=tuple(rows), links=links)


SPEC = CommandSpec(
    verb="prs",
    usage="prs",
    summary="List the open pull requests fluxbot made.",
    parse=parse,
    run=run,
    examples=("prs",),
)
