"""Check a change to the fleet (base..head of a git repo): render each affected cluster on both
sides, run the quality gates on head, and diff the rendered objects (#18).

Called by `fluxbot check` (any CI), `pr show` (local forge) and the PR comment (GitHub). Git is
read through a `Workspace` mirror; the deciding is done by `commands.affected`,
`commands.objectdiff` and `commands.planreport`.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Callable

from bot.git.checks import CheckReport, _Walk
from bot.git.render import ORIGIN_ANNOTATION, Renderer
from bot.git.workspace import GitReader, Workspace, WorkspaceError
from commands.affected import AffectedCluster, FileChange, affected_clusters, touches_fleet, watched
from commands.model import CommandError, Link, Message
from commands.objectdiff import AppliedObject, diff_objects
from commands.plan import ShowCheck
from commands.planreport import CheckResult, ClusterCheck, to_message
from commands.repo import RepoSnapshot

_FLUX_KUSTOMIZATION = "kustomize.toolkit.fluxcd.io/"


@dataclass
class Side:
    """One side of the change: a commit and how to name it."""

    commit: str
    label: str
    snapshot: RepoSnapshot


@dataclass
class Rendered:
    objects: list[AppliedObject] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)


def resolve(workspace: Workspace, ref: str, source_repo: Any = None) -> str:
    """The commit `ref` names: looked up in `source_repo` (a git.Repo) when given, then fetched
    into the mirror by id, so detached CI checkouts and remote-tracking refs work too."""
    repo = source_repo if source_repo is not None else workspace.repo
    try:
        commit = repo.git.rev_parse("--verify", "--end-of-options", f"{ref}^{{commit}}")
    except Exception:
        raise WorkspaceError(f"`{ref}` names no commit in {workspace.origin}; give a branch, tag or commit id") from None
    if source_repo is not None:
        workspace.fetch_commit(commit)
    return commit


def changed_files(workspace: Workspace, base: str, head: str) -> list[FileChange]:
    """What head changes against base (renames with their old path), as `git diff -M` sees it."""
    out = workspace.repo.git.diff("--name-status", "-M", "-z", base, head)
    fields = out.split("\0")
    changes: list[FileChange] = []
    index = 0
    while index < len(fields) and fields[index]:
        status = fields[index]
        if status[:1] in ("R", "C"):
            changes.append(FileChange(fields[index + 2], fields[index + 1] if status[:1] == "R" else ""))
            index += 3
        else:
            changes.append(FileChange(fields[index + 1]))
            index += 2
    return changes


def check_change(workspace: Workspace, base: str, head: str, base_label: str = "", head_label: str = "",
                 default_branch: str = "", checkpoint: Callable[[], None] = lambda: None) -> CheckResult:
    """The check of head against base (both commit ids in the workspace's mirror); `checkpoint`
    is called before each cluster (a superseded PR check raises there)."""
    branch = default_branch or workspace.default_branch
    # Each thread reads through its own Repo: GitPython's object reader is not thread-safe.
    sides = [Side(commit, label or commit[:12], RepoSnapshot(GitReader(workspace._reader_repo(), commit)))
             for commit, label in ((base, base_label), (head, head_label))]
    old, new = sides
    changes = changed_files(workspace, base, head)
    if not touches_fleet(changes, new.snapshot.layout):
        dirs = ", ".join(f"{d}/" for d in watched(new.snapshot.layout))
        return CheckResult(old.label, new.label, (), (f"no file under {dirs} changed: nothing to render",))
    renderer = Renderer(workspace, workspace.render_cache)
    checks = []
    for affected in affected_clusters(changes, old.snapshot, new.snapshot):
        checkpoint()
        checks.append(_check_cluster(affected, old, new, branch, renderer))
    return CheckResult(old.label, new.label, tuple(checks))


def _check_cluster(affected: AffectedCluster, old: Side, new: Side, branch: str, renderer: Renderer) -> ClusterCheck:
    if affected.ships_later:
        return ClusterCheck(affected.name, affected.describe(), ships_later=True)
    if not renderer.kubectl:
        return ClusterCheck(affected.name, affected.describe(),
                            error="cannot render: `kubectl` is not installed here (it runs `kubectl kustomize`)")
    notes: list[str] = []
    before = Rendered()
    if old.snapshot.cluster(affected.name) is not None:
        try:
            before = render_cluster(affected.name, old, branch, renderer)
        except CommandError as error:
            notes.append(f"! the base does not render either ({error.what}); its objects count as none")
    after = Rendered()
    if new.snapshot.cluster(affected.name) is not None:
        try:
            after = render_cluster(affected.name, new, branch, renderer)
        except CommandError as error:
            return ClusterCheck(affected.name, affected.describe(), gates=tuple(notes),
                                error=error.what + (f" ({error.hint})" if error.hint else ""))
    else:
        notes.append(f"clusters/{affected.name}/ is deleted: every object it had is removed")
    return ClusterCheck(affected.name, affected.describe(), tuple(diff_objects(before.objects, after.objects)),
                        tuple(after.gates + notes))


def render_cluster(cluster: str, side: Side, default_branch: str, renderer: Renderer) -> Rendered:
    """Every object Flux applies for `cluster` at `side` (the cluster directory, then each nested
    Flux Kustomization of the repo at its revision, substituted), with the Kustomization that
    applies it; raises CommandError when a gate fails (render, undefined variables, schemas)."""
    info = side.snapshot.cluster(cluster)
    assert info is not None
    report = CheckReport()
    # The walk `run_checks` does before a push, so a PR is judged exactly as fluxbot's own changes are.
    walk = _Walk(cluster, side.commit, default_branch, info.pin, info.backref.name if info.backref else "",
                 renderer, report)
    walk.run()
    appliers = _appliers([obj for rendered in walk.rendered for obj in rendered.objects])
    result = Rendered(gates=[line.strip() for line in report.lines])
    for rendered in walk.rendered:
        name, prune = appliers.get(rendered.layer.directory, (rendered.layer.owner.split(" (")[0], True))
        result.objects += [AppliedObject(_as_applied(obj), name, prune) for obj in rendered.objects]
    return result


def _as_applied(obj: Any) -> Any:
    """The object as the cluster gets it: without the annotation the renderer adds to name its file."""
    annotations = ((obj.get("metadata") or {}).get("annotations") or {}) if isinstance(obj, dict) else {}
    if ORIGIN_ANNOTATION not in annotations:
        return obj
    rest = {k: v for k, v in annotations.items() if k != ORIGIN_ANNOTATION}
    metadata = {k: v for k, v in obj["metadata"].items() if k != "annotations"} | ({"annotations": rest} if rest else {})
    return {**obj, "metadata": metadata}


def _appliers(objects: list[Any]) -> dict[str, tuple[str, bool]]:
    """Directory -> (the Flux Kustomization that applies it, its `prune`), from the rendered objects."""
    found: dict[str, tuple[str, bool]] = {}
    for obj in objects:
        if isinstance(obj, dict) and obj.get("kind") == "Kustomization" and \
                str(obj.get("apiVersion", "")).startswith(_FLUX_KUSTOMIZATION):
            spec = obj.get("spec") or {}
            path = posixpath.normpath(str(spec.get("path") or ".")).lstrip("/")
            meta = obj.get("metadata") or {}
            found.setdefault(path.removeprefix("./"),
                             (f"Kustomization {meta.get('namespace', '')}/{meta.get('name', '')}", spec.get("prune") is True))
    return found



def pr_check_message(workspace: Workspace, forge: Any, cmd: ShowCheck) -> Message:
    """`plan <n>` / `pr show <n>`: the check of PR `n`, from where it branched to its head."""
    pr = forge.get(cmd.number)
    if pr is None or not pr.head:
        raise CommandError(f"there is no PR #{cmd.number}", "`prs` lists the open ones")
    # Fetches outside the mirror lock (#20): reads of other requests go on meanwhile.
    workspace.refresh()
    head = pr.merge_commit or pr.head
    _fetch(workspace, head)
    with workspace.locked():
        branch = workspace.default_branch
        if pr.merge_commit:
            base = workspace.repo.git.rev_parse(f"{head}^1")
        else:
            base = workspace.repo.git.merge_base(f"refs/heads/{branch}", head)
    result = check_change(workspace, base, head, f"{branch}@{base[:12]}", f"#{pr.number}@{head[:12]}", branch)
    file_diff = workspace.repo.git.diff(base, head) if cmd.with_file_diff else ""
    message = to_message(result, f"PR #{pr.number}", file_diff)
    return Message(message.title, message.lines, tone=message.tone, links=(Link(f"PR #{pr.number}", pr.url),))


def _fetch(workspace: Workspace, commit: str) -> None:
    # A PR from a fork, or a head the mirror has not fetched: ask for the commit itself (bounded).
    workspace.fetch_commit(commit)
