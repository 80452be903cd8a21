"""`versions`: releases newest first, with their changelog headline and the clusters on them."""
from __future__ import annotations

from dataclasses import dataclass

from commands.context import CommandSpec, Context
from commands.model import Message
from commands.words import count


@dataclass(frozen=True)
class Versions:
    pass


def parse(words: list[str]) -> Versions:
    if words:
        raise SPEC.usage_error("versions takes no arguments")
    return Versions()


def run(cmd: Versions, ctx: Context) -> Message:
    repo = ctx.repo
    pinned: dict[str, list[str]] = {}
    for cluster in repo.clusters:
        selected = repo.selected(cluster.pin)
        if selected is not None and cluster.pin is not None:
            pinned.setdefault(selected.tag, []).append(cluster.name + (" (semver)" if cluster.pin.kind == "semver" else ""))
    rows = [("version", "date", "changelog", "clusters")]
    for version in reversed(repo.versions):
        section = version.changelog
        rows.append((
            version.tag,
            version.date or (section.date if section else ""),
            section.headline if section else ("" if repo.reader.read(repo.head, repo.layout.changelog) is None
                                              else "(no changelog entry)"),
            ", ".join(pinned.get(version.tag, [])),
        ))
    notes = tuple(f"not understood: {note}" for note in repo.unsupported)
    if not repo.versions:
        return Message("No releases yet", lines=("no git tag of the repo is a semantic version like `v0.1.0`",) + notes)
    unreleased = repo.changelog.get("unreleased")
    lines = (f"unreleased on the default branch: {count(len(unreleased.entries), 'changelog entry', 'changelog entries')}",) \
        if unreleased and unreleased.entries else ()
    return Message(count(len(repo.versions), "release"), lines=lines + notes, table=tuple(rows))


SPEC = CommandSpec(
    verb="versions",
    usage="versions",
    summary="List releases newest first with their changelog headline and the clusters pinned to each.",
    parse=parse,
    run=run,
    examples=("versions",),
)
