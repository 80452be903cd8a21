"""`status [cluster]`: where a cluster (or every cluster) stands against the latest release."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from commands.args import resolve_cluster
from commands.context import CommandSpec, Context
from commands.freeze import ALL
from commands.words import count
from commands.model import Cluster, Link, Message
from commands.repo import RepoSnapshot, parse_version


@dataclass(frozen=True)
class Status:
    cluster: str = ""


def parse(words: list[str]) -> Status:
    return Status(SPEC.optional_cluster(words))


def behind(repo: RepoSnapshot, cluster: Cluster) -> str:
    """How many releases are newer than what it runs: `0`, `2`, or `-` when that has no meaning."""
    pin = cluster.pin
    if pin is None or pin.kind not in ("tag", "semver"):
        return "-"
    selected = repo.selected(pin)
    current = parse_version(selected.tag if selected else pin.value) if pin.kind == "tag" or selected else None
    if current is None:
        return "-"
    ordered = repo.parsed_versions
    return str(len(ordered) - bisect.bisect_right(ordered, current))


def pin_text(repo: RepoSnapshot, cluster: Cluster, short: bool = False) -> str:
    """The pin as written, and for a semver range the tag Flux selects."""
    pin = cluster.pin
    if pin is None:
        return "?" if short else f"unknown: {cluster.problem}"
    if pin.kind != "semver":
        return str(pin)
    selected = repo.selected(pin)
    if short:
        return f"{pin} -> {selected.tag if selected else 'none'}"
    return f"{pin}: " + (f"Flux selects {selected.tag} (the newest matching tag)" if selected
                         else "no tag matches: Flux has nothing to apply")


def frozen(ctx: Context, name: str) -> str:
    """`yes, by alice: incident` when writes to the cluster are refused, else ''."""
    for key, scope in ((name, ""), (ALL, "all clusters, ")):
        if key in ctx.freezes:
            reason, by = ctx.freezes[key]
            return f"yes, {scope}by {by}: {reason}"
    return ""


def run(cmd: Status, ctx: Context) -> Message:
    repo = ctx.repo
    latest = repo.latest.tag if repo.latest else "(no releases)"
    if not cmd.cluster:
        rows = [("cluster", "pin", "productive", "behind", "open change", "frozen")]
        for cluster in repo.clusters:
            pr = ctx.open_change_for(cluster.name)
            rows.append((
                cluster.name,
                pin_text(repo, cluster, short=True),
                cluster.productive_text.split(":")[0].replace(" (treated as productive)", ""),
                behind(repo, cluster),
                f"#{pr.number}" if pr else "",
                "frozen" if frozen(ctx, cluster.name) else "",
            ))
        return Message(f"{count(len(repo.clusters), 'cluster')} · latest release {latest}", table=tuple(rows),
                       lines=tuple(f"not understood: {note}" for note in repo.unsupported))

    cluster = resolve_cluster(repo, cmd.cluster)
    pr = ctx.open_change_for(cluster.name)
    fields = [
        ("Pin", pin_text(repo, cluster)),
        ("Productive", cluster.productive_text),
        ("Latest release", latest),
        ("Behind", behind(repo, cluster)),
        ("Apps", ", ".join(a.name + (" (values)" if a.values_file else "") for a in cluster.apps) or "none"),
        ("Open change", f"#{pr.number} {pr.title}" if pr else "none"),
        ("Frozen", frozen(ctx, cluster.name) or "no"),
    ]
    lines = _live(ctx, cluster.name, fields)
    return Message(
        f"Cluster {cluster.name}",
        lines=lines,
        fields=tuple(fields),
        links=(Link(f"PR #{pr.number}", pr.url),) if pr else (),
        tone="warning" if cluster.problem else "info",
    )


def _live(ctx: Context, name: str, fields: list[tuple[str, str]]) -> tuple[str, ...]:
    """Add what Flux reports on the cluster itself; the objects that are not Ready as lines."""
    live = ctx.live(name)
    if live is None:
        return ()
    if "error" in live:
        fields.append(("Live", f"unavailable: {live['error']}"))
        return ()
    if live.get("missing"):
        fields.append(("Live", "the infrastructure Kustomization is not on the cluster"))
        return ()
    status, reason = live["ready"], live["reason"]
    fields += [
        ("Ready", f"{status}" + (f" ({reason})" if reason else "")),
        ("Applied", live["applied"] or "?"),
        ("Attempted", live["attempted"] or "?"),
        ("Suspended", "yes" if live["suspended"] else "no"),
    ]
    # Only the objects that carry the infrastructure (the chain), not every object on the cluster.
    return ((f"infrastructure: {live['message']}",) if status != "True" and live["message"] else ()) + tuple(
        f"not ready: {line}" for line in live["problems"])


SPEC = CommandSpec(
    verb="status",
    usage="status [cluster]",
    summary="Show a cluster's pin, productive flag, apps, open change and freeze; without a cluster, all of them.",
    parse=parse,
    run=run,
    examples=("status", "status prod-eu"),
)
