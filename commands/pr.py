"""`pr merge <n>` / `pr close <n>`: act on a fluxbot pull request (the local forge's merge button);
`pr show <n>`: its check and file diff (read-only, like `plan <n>`)."""
from __future__ import annotations

from commands.context import CommandSpec, Context
from commands.model import CommandError, PrAction
from commands.plan import ShowCheck, parse_number


def parse(words: list[str]) -> PrAction | ShowCheck:
    if len(words) == 2 and words[0].lower() == "show":
        return ShowCheck(parse_number(words[1], SPEC))
    if len(words) != 2 or words[0].lower() not in ("merge", "close"):
        raise SPEC.usage_error("pr takes `merge`, `close` or `show` and a PR number")
    number = words[1].lstrip("#")
    if not number.isdigit():
        raise SPEC.usage_error(f"`{words[1]}` is not a PR number")
    return PrAction(words[0].lower(), int(number))  # type: ignore[arg-type]


def run(cmd: PrAction | ShowCheck, ctx: Context) -> PrAction | ShowCheck:
    if isinstance(cmd, ShowCheck):
        return cmd  # any PR, open or not, fluxbot's or not
    if not any(pr.number == cmd.number for pr in ctx.open_prs):
        known = ", ".join(f"#{pr.number}" for pr in ctx.open_prs) or "none"
        raise CommandError(f"there is no open fluxbot PR #{cmd.number}", f"open fluxbot PRs: {known}")
    return cmd


SPEC = CommandSpec(
    verb="pr",
    usage="pr merge|close|show <number>",
    summary="Merge or close a fluxbot pull request (local forge; on GitHub use the PR page), or show its check and diff.",
    parse=parse,
    run=run,
    examples=("pr merge 1", "pr close 1", "pr show 1"),
    action="merge",
)
