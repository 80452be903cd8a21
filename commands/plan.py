"""`plan <PR>` (and `pr show <PR>`): the check of a pull request, per affected cluster (#18).

Planning is trivial here: the command names the PR; `bot/` renders its base and head and answers
with `planreport.to_message`, since rendering needs git and kubectl.
"""
from __future__ import annotations

from dataclasses import dataclass

from commands.context import CommandSpec, Context


@dataclass(frozen=True)
class ShowCheck:
    """Render and diff PR `number` (base: where it branched from the default branch)."""

    number: int
    with_file_diff: bool = True  # `pr show` also prints the PR's own file diff


def parse_number(word: str, usage: CommandSpec) -> int:
    number = word.lstrip("#")
    if not number.isdigit():
        raise usage.usage_error(f"`{word}` is not a PR number")
    return int(number)


def parse(words: list[str]) -> ShowCheck:
    if len(words) != 1:
        raise SPEC.usage_error("plan takes one PR number")
    return ShowCheck(parse_number(words[0], SPEC), with_file_diff=False)


def run(cmd: ShowCheck, ctx: Context) -> ShowCheck:
    return cmd


SPEC = CommandSpec(
    verb="plan",
    usage="plan <PR number>",
    summary="Render a pull request's base and head per affected cluster: the gates, and objects added, removed, changed.",
    parse=parse,
    run=run,
    examples=("plan 12",),
)
