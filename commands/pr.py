"""`pr merge <n>` / `pr close <n>`: act on a fluxbot pull request (the local forge's merge button)."""
from __future__ import annotations

from commands.context import CommandSpec, Context
from commands.model import CommandError, PrAction


def parse(words: list[str]) -> PrAction:
    if len(words) != 2 or words[0].lower() not in ("merge", "close"):
        raise SPEC.usage_error("pr takes `merge` or `close` and a PR number")
    number = words[1].lstrip("#")
    if not number.isdigit():
        raise SPEC.usage_error(f"`{words[1]}` is not a PR number")
    return PrAction(words[0].lower(), int(number))  # type: ignore[arg-type]


def run(cmd: PrAction, ctx: Context) -> PrAction:
    if not any(pr.number == cmd.number for pr in ctx.open_prs):
        known = ", ".join(f"#{pr.number}" for pr in ctx.open_prs) or "none"
        raise CommandError(f"there is no open fluxbot PR #{cmd.number}", f"open fluxbot PRs: {known}")
    return cmd


SPEC = CommandSpec(
    verb="pr",
    usage="pr merge|close <number>",
    summary="Merge or close a fluxbot pull request (local forge; on GitHub use the PR page).",
    parse=parse,
    run=run,
    examples=("pr merge 1", "pr close 1"),
    action="merge",
)
