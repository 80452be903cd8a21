"""`diff <from> <to>`: what changes in `infrastructure/` between two releases."""
from __future__ import annotations

from dataclasses import dataclass

from commands.args import check_name, resolve_version
from commands.compare import changelog_lines, component_changes, component_lines
from commands.context import CommandSpec, Context
from commands.model import Message

_MAX_FILES = 40


@dataclass(frozen=True)
class Diff:
    old: str
    new: str


def parse(words: list[str]) -> Diff:
    if len(words) == 3 and words[1].lower() in ("to", ".."):
        words = [words[0], words[2]]
    if len(words) != 2:
        raise SPEC.usage_error("diff needs two versions")
    return Diff(check_name(words[0], "version"), check_name(words[1], "version"))


def run(cmd: Diff, ctx: Context) -> Message:
    repo = ctx.repo
    old, new = resolve_version(repo, cmd.old), resolve_version(repo, cmd.new)
    infrastructure = repo.layout.infrastructure.strip("/")
    files = repo.reader.changed_files(old.commit, new.commit, infrastructure + "/")
    lines = ["*Changelog*"] + [f"• {e}" for e in changelog_lines(repo, old, new) or ["(none)"]]
    components = component_lines(component_changes(repo, old, new))
    lines += ["*Components*"] + [f"• {c}" for c in components or ["no chart changes"]]
    if not repo.reader.list_files(new.commit, infrastructure + "/"):
        lines.append(f"{new.tag} has no {infrastructure}/ directory: set `layout.infrastructure` to the released directory")
    lines += [f"*Files changed in {infrastructure}/* ({len(files)})"] + [f"• {f}" for f in files[:_MAX_FILES]]
    if len(files) > _MAX_FILES:
        lines.append(f"• … and {len(files) - _MAX_FILES} more")
    return Message(f"{old.tag} -> {new.tag}", lines=tuple(lines))


SPEC = CommandSpec(
    verb="diff",
    usage="diff <from> <to>",
    summary="Show changelog entries, component and file changes in infrastructure/ between two releases.",
    parse=parse,
    run=run,
    examples=("diff v0.3.0 v0.4.0",),
)
