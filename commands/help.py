"""`help [command]`: generated from the registry, so every command documents itself."""
from __future__ import annotations

from dataclasses import dataclass

from commands.context import CommandSpec, Context
from commands.model import CommandError, Message


@dataclass(frozen=True)
class Help:
    verb: str = ""


def parse(words: list[str]) -> Help:
    if len(words) > 1:
        raise SPEC.usage_error("help takes at most one command")
    return Help(words[0].lower() if words else "")


def run(cmd: Help, ctx: Context) -> Message:
    from commands.registry import COMMANDS, suggest  # the registry imports this module

    if cmd.verb:
        spec = COMMANDS.get(cmd.verb)
        if spec is None:
            raise CommandError(f"there is no command `{cmd.verb}`", suggest(cmd.verb))
        lines = [spec.summary] + [f"example: `{e}`" for e in spec.examples]
        if spec.action:
            lines.append(f"needs permission: `{spec.action}`")
        return Message(f"`{spec.usage}`", lines=tuple(lines))
    rows = [("command", "what it does")] + [(f"`{s.usage}`", s.summary) for s in COMMANDS.values()]
    return Message("fluxbot commands", table=tuple(rows), context="`help <command>` for details and examples")


SPEC = CommandSpec(
    verb="help",
    usage="help [command]",
    summary="List the commands, or explain one.",
    parse=parse,
    run=run,
    examples=("help", "help promote"),
)
