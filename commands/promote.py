"""`promote <version> to <cluster>[,<cluster>...]`: one PR per cluster that bumps its pin."""
from __future__ import annotations

from dataclasses import dataclass

from commands.args import check_name, cluster_list, resolve_cluster, resolve_version
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, Cluster, CommandError, Version
from commands.pinchange import branch_name, ensure_no_open_change, is_newer, plan_pin_change, promotable_pin


@dataclass(frozen=True)
class Promote:
    version: str
    clusters: tuple[str, ...]


def parse(words: list[str]) -> Promote:
    lowered = [w.lower() for w in words]
    if len(words) < 3 or "to" not in lowered[1:]:
        raise SPEC.usage_error("promote needs a version and the clusters to promote")
    split = lowered.index("to", 1)
    if split != 1:
        raise SPEC.usage_error(f"`{' '.join(words[:split])}` is not one version")
    version = check_name(words[0], "version")
    clusters = tuple(check_name(c, "cluster") for c in cluster_list(words[split + 1 :]))
    return Promote(version, clusters)


def run(cmd: Promote, ctx: Context) -> tuple[ChangePlan, ...]:
    """Validate every cluster first, so a bad one refuses the whole request before any write."""
    target = resolve_version(ctx.repo, cmd.version)
    checked, refused = [], []
    for name in cmd.clusters:
        try:
            checked.append(_check(ctx, name, target))
        except CommandError as error:
            if len(cmd.clusters) == 1:
                raise
            refused.append((name, error))
    if refused:
        # Every cluster named gets its line: the refused ones with why, the others that they wait.
        lines = tuple(f"{name}: {error.what}" + (f" ({error.hint})" if error.hint else "") for name, error in refused)
        lines += tuple(f"{cluster.name}: would move `{current}` -> `{target.tag}`; not opened" for cluster, current in checked)
        raise CommandError(
            f"cannot promote {target.tag} to {len(refused)} of {len(cmd.clusters)} clusters; nothing was opened",
            "fix or leave out the refused clusters, then ask again", details=lines,
        )
    return tuple(plan_pin_change(ctx, cluster, current, target, "promotion") for cluster, current in checked)


def _check(ctx: Context, name: str, target: Version) -> tuple[Cluster, str]:
    cluster = resolve_cluster(ctx.repo, name)
    current = promotable_pin(cluster)
    if current == target.tag:
        raise CommandError(f"`{name}` is already pinned to `{target.tag}`", "nothing to promote")
    if is_newer(current, target.tag):
        raise CommandError(
            f"`{target.tag}` is older than `{current}`, which `{name}` runs now",
            f"to go back, use `rollback {name} to {target.tag}`",
        )
    ensure_no_open_change(ctx, cluster, branch_name("promotion", name, target.tag))
    return cluster, current


SPEC = CommandSpec(
    verb="promote",
    usage="promote <version> to <cluster>[,<cluster>...]",
    summary="Open a PR per cluster that pins its infrastructure to a release.",
    parse=parse,
    run=run,
    examples=("promote v0.4.0 to prod-eu", "promote v0.4.0 to demo, prod-eu"),
    action="promote",
    proposes=True,
    targets=lambda cmd: cmd.clusters,
)
