"""Planning a change of a cluster's infrastructure pin: the edit, the branch and the PR text.

Promotion and rollback differ only in direction and wording; both end here.
"""
from __future__ import annotations

from commands.compare import changelog_lines, component_changes, component_lines
from commands.context import Context
from commands.model import AlreadyOpen, ChangePlan, Cluster, CommandError, FileEdit, ScalarEdit, Version
from commands.repo import parse_version
from commands.yamledit import replace_scalar


def promotable_pin(cluster: Cluster) -> str:
    """The tag a cluster is pinned to, or a refusal explaining why it cannot be moved."""
    if cluster.backref is None:
        raise CommandError(f"cannot find the infrastructure back-reference of `{cluster.name}`: {cluster.problem}")
    pin = cluster.pin
    if pin is None:
        raise CommandError(
            f"the GitRepository `{cluster.backref.name}` of `{cluster.name}` has no `spec.ref`",
            f"pin it with `spec.ref.tag` in {cluster.backref.path}",
        )
    if pin.kind == "branch":
        raise CommandError(
            f"`{cluster.name}` tracks the branch `{pin.value}`, so it already runs every merged change",
            "only clusters pinned to a tag (`spec.ref.tag`) can be promoted or rolled back",
        )
    if pin.kind != "tag":
        raise CommandError(
            f"`{cluster.name}` is pinned by `spec.ref.{pin.kind}: {pin.value}`, not by a tag",
            f"fluxbot moves `spec.ref.tag` pins only; change {cluster.backref.path} by hand",
        )
    return pin.value


def branch_name(kind: str, cluster: str, tag: str) -> str:
    """Deterministic per change, so a repeated request finds the branch and PR it made before."""
    return f"fluxbot/{'promote' if kind == 'promotion' else kind}-{cluster}-{tag}"


def ensure_no_open_change(ctx: Context, cluster: Cluster, branch: str) -> None:
    """One open change per cluster: refuse while another fluxbot PR for it is open."""
    pr = ctx.open_change_for(cluster.name)
    if pr is not None and pr.branch == branch:
        raise AlreadyOpen(
            f"this change is already open: PR #{pr.number} {pr.title} ({pr.url})",
            "nothing new was made; follow that PR",
            pr=pr,
        )
    if pr is not None:
        raise CommandError(
            f"`{cluster.name}` already has an open change: PR #{pr.number} {pr.title} ({pr.url})",
            f"merge or close it first (`pr merge {pr.number}` / `pr close {pr.number}`); one open change per cluster",
        )


def is_newer(a: str, b: str) -> bool:
    """True when tag `a` is a later semantic version than tag `b` (unparseable tags are older)."""
    va, vb = parse_version(a), parse_version(b)
    if va is None:
        return False
    return vb is None or va > vb


def plan_pin_change(
    ctx: Context, cluster: Cluster, current: str, target: Version, kind: str, reason: str = ""
) -> ChangePlan:
    """A ChangePlan that moves the cluster's pin from `current` to `target` by a one-value edit."""
    assert cluster.backref is not None and cluster.pin is not None
    repo = ctx.repo
    path = cluster.backref.path
    before = repo.reader.read(repo.head, path)
    if before is None:
        raise CommandError(f"{path} vanished from the default branch")
    key_path = ("spec", "ref", "tag")
    after = replace_scalar(before, cluster.backref.document, key_path, target.tag)
    scalar = ScalarEdit(cluster.backref.document, key_path, current, target.tag)

    verb = "promote" if kind == "promotion" else "roll back"
    title = f"{'Promote' if kind == 'promotion' else 'Roll back'} {cluster.name} to {target.tag}"
    commit_message = (
        f"chore({cluster.name}): {verb} infrastructure to {target.tag}\n\n"
        f"{current} -> {target.tag}" + (f"\n\nReason: {reason}" if reason else "")
        + f"\n\nRequested-by: {ctx.requester}\n"
    )
    labels = ["fluxbot", kind, f"cluster:{cluster.name}"] + (["productive"] if cluster.productive else [])
    return ChangePlan(
        kind=kind,
        cluster=cluster.name,
        branch=branch_name(kind, cluster.name, target.tag),
        title=title,
        body=_body(ctx, cluster, current, target, kind, reason, path),
        commit_message=commit_message,
        edits=(FileEdit(path, before, after, scalar),),
        labels=tuple(labels),
        productive=cluster.productive,
        from_version=current,
        to_version=target.tag,
    )


def _body(ctx: Context, cluster: Cluster, current: str, target: Version, kind: str, reason: str, path: str) -> str:
    repo = ctx.repo
    lines = [
        f"## {'Promotion' if kind == 'promotion' else 'Rollback'} of `{cluster.name}`: `{current}` -> `{target.tag}`",
        "",
        f"- Cluster: `{cluster.name}`" + (" (**productive**: the change gate applies)" if cluster.productive else " (not productive)")
        + (f"; productive: {cluster.productive_source}" if cluster.productive_source else ""),
        f"- File: `{path}` (`spec.ref.tag` only)",
        f"- Requested by: {ctx.requester}",
    ]
    if reason:
        lines.append(f"- Reason: {reason}")
    old = repo.version(current)
    if old is not None:
        entries = changelog_lines(repo, old, target)
        direction = "Changes that arrive" if kind == "promotion" else "Changes that are taken back"
        lines += ["", f"### {direction}", ""] + [f"- {e}" for e in entries or ["(no changelog entries)"]]
        components = component_lines(component_changes(repo, old, target))
        if components:
            lines += ["", "### Components", "", "```diff", *components, "```"]
    else:
        lines += ["", f"`{current}` is not a release tag, so no changelog is shown."]
    lines += ["", "---", "Opened by fluxbot. Merge to apply; Flux reconciles the cluster afterwards."]
    return "\n".join(lines) + "\n"
