"""`freeze <cluster|all> because <reason>` / `unfreeze <cluster|all>`: stop writes during an incident.

While frozen, write commands for that cluster are refused with the reason and who froze it,
except `rollback`: incidents must be able to go back.
"""
from __future__ import annotations

from dataclasses import dataclass

from commands.args import check_name, resolve_cluster
from commands.bounds import one_line_reason
from commands.context import CommandSpec, Context
from commands.model import CommandError, FreezeAction, person

ALL = "all"


def parse_freeze(words: list[str]) -> FreezeAction:
    lowered = [w.lower() for w in words]
    if len(words) < 3 or lowered[1] != "because":
        raise FREEZE.usage_error("freeze needs a cluster (or `all`) and a reason")
    return FreezeAction("freeze", _target(words[0]), one_line_reason(" ".join(words[2:])))


def parse_unfreeze(words: list[str]) -> FreezeAction:
    if len(words) != 1:
        raise UNFREEZE.usage_error("unfreeze takes one cluster or `all`")
    return FreezeAction("unfreeze", _target(words[0]))


def _target(word: str) -> str:
    return ALL if word.lower() == ALL else check_name(word, "cluster")


def run(cmd: FreezeAction, ctx: Context) -> FreezeAction:
    if cmd.target != ALL:
        resolve_cluster(ctx.repo, cmd.target)
    if cmd.action == "unfreeze" and cmd.target not in ctx.freezes:
        frozen = ", ".join(f"`{t}`" for t in ctx.freezes) or "nothing"
        raise CommandError(f"`{cmd.target}` is not frozen", f"frozen now: {frozen}")
    return cmd


def freeze_refusal(freezes: dict[str, tuple[str, str]], verb: str, targets: tuple[str, ...]) -> CommandError | None:
    """The refusal for a write while a target (or everything) is frozen; rollbacks always pass."""
    if verb in ("rollback", "freeze", "unfreeze") or not freezes:
        return None
    for target in targets or (ALL,):
        for key in (target, ALL):
            if key in freezes:
                reason, by = freezes[key]
                scope = "all clusters are" if key == ALL else f"`{target}` is"
                return CommandError(f"{scope} frozen by {person(by)}: {reason}",
                                    f"`rollback` still works; `unfreeze {key}` lifts the freeze")
    return None


FREEZE = CommandSpec(
    verb="freeze", usage="freeze <cluster|all> because <reason>",
    summary="Refuse changes to a cluster (or all) until unfrozen; rollbacks still work.",
    parse=parse_freeze, run=run, examples=("freeze prod-eu because incident INC-123",), action="freeze",
    targets=lambda cmd: () if cmd.target == ALL else (cmd.target,),
)
UNFREEZE = CommandSpec(
    verb="unfreeze", usage="unfreeze <cluster|all>",
    summary="Lift a freeze.",
    parse=parse_unfreeze, run=run, examples=("unfreeze prod-eu",), action="freeze",
    targets=lambda cmd: () if cmd.target == ALL else (cmd.target,),
)
