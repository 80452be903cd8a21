"""`audit [cluster]`: the recent entries of the append-only audit log."""
from __future__ import annotations

from dataclasses import dataclass

from commands.context import CommandSpec, Context
from commands.model import Message, person

_SHOWN = 20


@dataclass(frozen=True)
class Audit:
    cluster: str = ""


def parse(words: list[str]) -> Audit:
    return Audit(SPEC.optional_cluster(words))


def run(cmd: Audit, ctx: Context) -> Message:
    entries = [e for e in ctx.audit_log() if not cmd.cluster or cmd.cluster in e.clusters
               or (not e.clusters and cmd.cluster in e.command.split())]  # entries of before the column
    if not entries:
        return Message("No audit entries" + (f" for {cmd.cluster}" if cmd.cluster else ""))
    rows = [("when", "who", "command", "clusters", "result")] + [
        (e.at, person(e.user), _short(e.command), ", ".join(e.clusters), e.outcome) for e in entries[:_SHOWN]]
    return Message(f"Audit log{' of ' + cmd.cluster if cmd.cluster else ''}: latest {len(rows) - 1}", table=tuple(rows))


def _short(command: str) -> str:
    return command if len(command) <= 80 else command[:79] + "…"


SPEC = CommandSpec(
    verb="audit",
    usage="audit [cluster]",
    summary="Show the latest audit log entries (who asked what, and the result), for one cluster or all.",
    parse=parse,
    run=run,
    examples=("audit prod-eu",),
)
