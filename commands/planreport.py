"""The check of a change to the fleet, per affected cluster, as a PR comment (markdown) or JSON.

One comment per PR, so its size is bounded by GitHub's limit on a comment body (65,536
characters, https://docs.github.com/en/rest/issues/comments#create-an-issue-comment answers 422
beyond it): the summary always fits, diffs are cut object by object with a note saying so.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from commands.model import Message, Tone
from commands.objectdiff import ObjectChange

COMMENT_LIMIT = 65_536
MARKER = "<!-- fluxbot:check -->"  # finds fluxbot's comment on a PR again, to update it in place

Result = Literal["changed", "unchanged", "failed", "ships-later"]
_NOTE_RESERVE = 400
_MAX_LISTED = 50
_ICON = {"changed": "🟡", "unchanged": "⚪", "failed": "❌", "ships-later": "⏭️"}


@dataclass(frozen=True)
class ClusterCheck:
    """One affected cluster: why, which gates passed, and what changes on it."""

    cluster: str
    reason: str
    changes: tuple[ObjectChange, ...] = ()
    gates: tuple[str, ...] = ()  # "✓ clusters/test renders (12 objects)"
    error: str = ""  # the gate that failed, with its hint
    ships_later: bool = False

    @property
    def result(self) -> Result:
        if self.error:
            return "failed"
        if self.ships_later:
            return "ships-later"
        return "changed" if self.changes else "unchanged"

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def summary(self) -> str:
        if self.error:
            return "check failed"
        if self.ships_later:
            return "ships with the next release"
        if not self.changes:
            return "no change to the rendered objects"
        return f"{self.count('added')} added, {self.count('removed')} removed, {self.count('changed')} changed"


@dataclass(frozen=True)
class CheckResult:
    """The whole check of base..head."""

    base: str
    head: str
    clusters: tuple[ClusterCheck, ...] = ()
    notes: tuple[str, ...] = field(default=())  # e.g. "no file under clusters/, infrastructure/ or apps/ changed"

    @property
    def failed(self) -> bool:
        return any(c.error for c in self.clusters)

    def headline(self) -> str:
        failed = [c.cluster for c in self.clusters if c.error]
        if failed:
            return f"fluxbot check failed for {', '.join(failed)}"
        changed = [c.cluster for c in self.clusters if c.result == "changed"]
        if changed:
            return f"fluxbot check passed: changes {', '.join(changed)}"
        return "fluxbot check passed: no rendered object changes"


def to_json(result: CheckResult) -> dict[str, Any]:
    return {
        "base": result.base,
        "head": result.head,
        "passed": not result.failed,
        "summary": result.headline(),
        "notes": list(result.notes),
        "clusters": [
            {
                "cluster": c.cluster,
                "reason": c.reason,
                "result": c.result,
                "summary": c.summary(),
                "error": c.error,
                "gates": list(c.gates),
                "counts": {kind: c.count(kind) for kind in ("added", "removed", "changed")},
                "objects": [
                    {"change": o.change, "kind": o.key.kind, "group": o.key.group, "namespace": o.key.namespace,
                     "name": o.key.name, "applied_by": o.applied_by, "prune": o.prune, "diff": o.diff}
                    for o in c.changes
                ],
            }
            for c in result.clusters
        ],
    }


def to_markdown(result: CheckResult, limit: int = COMMENT_LIMIT) -> str:
    """The PR comment: a summary table, then per cluster its gates and diff, within `limit` characters."""
    head = [MARKER, f"### {'❌' if result.failed else '✅'} {_escape(result.headline())}", "",
            f"`{_escape(result.base)}` → `{_escape(result.head)}`", ""]
    head += [f"_{_escape(note)}_" for note in result.notes]
    if result.clusters:
        head += ["| cluster | result | why |", "| --- | --- | --- |"]
        head += [f"| {_escape(c.cluster)} | {_ICON[c.result]} {_escape(c.summary())} | {_cell(c.reason)} |"
                 for c in result.clusters]
    head.append("")
    sections = [_cluster_blocks(c) for c in result.clusters]
    # Every cluster's heading, gates and error always show; diffs fill what is left, in order.
    budget = limit - len(_join(head)) - sum(len(s[0]) + 1 for s in sections) - _NOTE_RESERVE
    body: list[str] = []
    hidden = 0
    for heading, *diffs in sections:
        body.append(heading)
        for block in diffs:
            if hidden or len(block) + 1 > budget:
                hidden += 1
                continue
            body.append(block)
            budget -= len(block) + 1
    text = _join(head + body)
    note = ""
    if len(text) > limit - _NOTE_RESERVE:  # only when the headings alone are too many (thousands of clusters)
        text = text[:limit - _NOTE_RESERVE].rsplit("\n", 1)[0]
        hidden = hidden or 1
    if hidden:
        note = (f"\n\n> **Diff truncated** ({hidden} object diff(s) not shown): GitHub takes at most {limit:,} "
                "characters in a comment. Run `fluxbot check --repo . --base <base> --head <head>` for all of it.\n")
    return text + note


def _cluster_blocks(cluster: ClusterCheck) -> list[str]:
    """The cluster's section as blocks that are each whole (so cutting between them keeps valid markdown)."""
    title = f"#### {_ICON[cluster.result]} {_escape(cluster.cluster)}: {_escape(cluster.summary())}"
    lines = [title, ""]
    if cluster.ships_later:
        lines.append(f"{_escape(cluster.reason)}; nothing changes on it with this PR.")
    if cluster.error:
        lines += [f"**{_escape(cluster.error)}**", ""]
    lines += [f"- {_escape(g)}" for g in cluster.gates]
    removed = [c for c in cluster.changes if c.change == "removed"]
    if removed:
        lines += ["", "Removed:"] + [f"- {_escape(c.describe())}" for c in removed[:_MAX_LISTED]]
        if len(removed) > _MAX_LISTED:
            lines.append(f"- … and {len(removed) - _MAX_LISTED} more")
    blocks = ["\n".join(lines) + "\n"]
    for change in cluster.changes:
        fence = _fence(change.diff)
        blocks.append(f"<details><summary>{change.change}: {_escape(str(change.key))}"
                      f"{' (' + _escape(change.applied_by) + ')' if change.applied_by else ''}</summary>\n\n"
                      f"{fence}diff\n{change.diff.rstrip()}\n{fence}\n</details>\n")
    return blocks


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _cell(text: str) -> str:
    return _escape(text).replace("|", "\\|").replace("\n", " ")


def _join(lines: list[str]) -> str:
    return "\n".join(lines)


def to_text(result: CheckResult) -> str:
    """The check for a terminal: per cluster its result, gates, and each object's diff."""
    out = [f"{'✗' if result.failed else '✓'} {result.headline()}  ({result.base} -> {result.head})"]
    out += [f"  {note}" for note in result.notes]
    for cluster in result.clusters:
        out.append(f"== {cluster.cluster}: {cluster.summary()}  ({cluster.reason})")
        if cluster.error:
            out.append(f"  ✗ {cluster.error}")
        out += [f"  {gate}" for gate in cluster.gates]
        for change in cluster.changes:
            out.append(f"  {change.change}: {change.describe()}")
            out += [f"    {line}" for line in change.diff.rstrip().splitlines()]
    return "\n".join(out)


def to_message(result: CheckResult, title: str, file_diff: str = "", max_lines: int = 400) -> Message:
    """The check as a chat reply: per cluster its result and gates, then the diffs, bounded in lines."""
    lines: list[str] = []
    lines += list(result.notes)
    for cluster in result.clusters:
        lines.append(f"{_ICON[cluster.result]} {cluster.cluster}: {cluster.summary()} ({cluster.reason})")
        if cluster.error:
            lines.append(f"    ✗ {cluster.error}")
        lines += [f"    {gate}" for gate in cluster.gates]
    for cluster in result.clusters:
        for change in cluster.changes:
            lines.append(f"{cluster.cluster}: {change.change} {change.describe()}")
            lines += [f"    {line}" for line in change.diff.rstrip().splitlines()]
    if file_diff:
        lines.append("Files changed:")
        lines += [f"    {line}" for line in file_diff.rstrip().splitlines()]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… {len(lines) - max_lines} more lines; `fluxbot check --base {result.base} "
                                     f"--head {result.head}` prints all of it"]
    tone: Tone = "error" if result.failed else "success"
    return Message(f"{title}: {result.headline()}", lines=tuple(lines), tone=tone)
