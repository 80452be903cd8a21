"""The one place commands are registered; parsing, dispatch and `help` all read from here."""
from __future__ import annotations

import difflib
from typing import Any

from commands import app, audit, diff, freeze, help, onboard, pr, promote, prs, reconcile, release, rollback, status, unlock, versions
from commands import plan as plan_command  # `plan` below is the registry's own function
from commands.args import split_words
from commands.bounds import check_command_length
from commands.context import CommandSpec, Context
from commands.model import CommandError, Message, Outcome

COMMANDS: dict[str, CommandSpec] = {
    spec.verb: spec
    for spec in (
        help.SPEC,
        status.SPEC,
        versions.SPEC,
        diff.SPEC,
        promote.SPEC,
        rollback.SPEC,
        prs.SPEC,
        pr.SPEC,
        plan_command.SPEC,
        onboard.SPEC,
        app.SPEC,
        release.SPEC,
        freeze.FREEZE,
        freeze.UNFREEZE,
        unlock.SPEC,
        reconcile.SPEC,
        audit.SPEC,
    )
}


def suggest(verb: str) -> str:
    near = difflib.get_close_matches(verb, COMMANDS, n=2, cutoff=0.6)
    known = ", ".join(f"`{v}`" for v in COMMANDS)
    return (f"did you mean `{near[0]}`? " if near else "") + f"commands: {known}; `help` explains them"


def parse(text: str) -> tuple[CommandSpec, Any]:
    """Chat text -> (the command's spec, its typed arguments); CommandError when it is not one."""
    check_command_length(text)
    words = split_words(text)
    if not words:
        raise CommandError("no command given", suggest(""))
    spec = COMMANDS.get(words[0].lower())
    if spec is None:
        raise CommandError(f"`{words[0]}` is not a fluxbot command", suggest(words[0].lower()))
    return spec, spec.parse(words[1:])


def plan(text: str, ctx: Context) -> Outcome:
    """Parse and plan in one step; raises CommandError for anything that should be refused."""
    spec, command = parse(text)
    return spec.run(command, ctx)


def error_message(error: CommandError) -> Message:
    return Message(error.what, lines=error.details + ((error.hint,) if error.hint else ()), tone=error.tone)
