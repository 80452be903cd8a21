"""What changes between two infrastructure versions: changelog entries and chart versions."""
from __future__ import annotations

from dataclasses import dataclass

from commands.model import Component, Version
from commands.repo import RepoSnapshot


@dataclass(frozen=True)
class ComponentChanges:
    added: tuple[Component, ...]
    removed: tuple[Component, ...]
    changed: tuple[tuple[Component, Component], ...]  # (old, new) whose chart version differs


def component_changes(repo: RepoSnapshot, old: Version, new: Version) -> ComponentChanges:
    """HelmReleases added, removed, or with another chart version, going from `old` to `new`."""
    before = {(c.namespace, c.name): c for c in repo.components(old)}
    after = {(c.namespace, c.name): c for c in repo.components(new)}
    return ComponentChanges(
        added=tuple(after[k] for k in sorted(after.keys() - before.keys())),
        removed=tuple(before[k] for k in sorted(before.keys() - after.keys())),
        changed=tuple(
            (before[k], after[k])
            for k in sorted(before.keys() & after.keys())
            if (before[k].chart, before[k].chart_version) != (after[k].chart, after[k].chart_version)
        ),
    )


def changelog_lines(repo: RepoSnapshot, old: Version, new: Version) -> list[str]:
    """`v0.4.0 · Changed: ...` for every changelog entry of the releases between the two."""
    lines = []
    for version in reversed(repo.versions_between(old, new)):
        section = version.changelog
        if section is None or not section.entries:
            lines.append(f"{version.tag} · (no changelog entry)")
            continue
        for category, text in section.entries:
            lines.append(f"{version.tag} · {category + ': ' if category else ''}{text}")
    return lines


def component_lines(changes: ComponentChanges) -> list[str]:
    """One line per component change, for messages and PR bodies."""
    return (
        [f"+ {c.name} ({c.chart} {c.chart_version})" for c in changes.added]
        + [f"- {c.name} ({c.chart} {c.chart_version})" for c in changes.removed]
        + [f"~ {o.name}: {o.chart} {o.chart_version} -> {n.chart_version}" for o, n in changes.changed]
    )
