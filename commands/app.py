"""`app add <app> to <cluster> [set key=value ...]` / `app remove <app> from <cluster>`."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from commands.args import check_name, resolve_cluster
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, Cluster, CommandError, FileEdit
from commands.repo import documents, is_flux_kustomization
from commands.values import dump_yaml, parse_values, quoted, values_tree
from commands.yamledit import append_item, remove_item


@dataclass(frozen=True)
class AppChange:
    action: str  # "add" | "remove"
    app: str
    cluster: str
    values: tuple[tuple[tuple[str, ...], Any], ...] = ()  # (key path, value): strings unless typed with `:=`


def parse(words: list[str]) -> AppChange:
    lowered = [w.lower() for w in words]
    if len(words) >= 4 and lowered[0] == "add" and lowered[2] == "to":
        values = ()
        if len(words) > 4:
            if lowered[4] != "set" or len(words) == 5:
                raise SPEC.usage_error(f"`{words[4]}` is not understood here")
            values = parse_values(words[5:])
        return AppChange("add", check_name(words[1], "app"), check_name(words[3], "cluster"), values)
    if len(words) == 4 and lowered[0] == "remove" and lowered[2] == "from":
        return AppChange("remove", check_name(words[1], "app"), check_name(words[3], "cluster"))
    raise SPEC.usage_error("use `app add <app> to <cluster> [set key=value ...]` or `app remove <app> from <cluster>`")


def run(cmd: AppChange, ctx: Context) -> tuple[ChangePlan, ...]:
    cluster = resolve_cluster(ctx.repo, cmd.cluster)
    known = sorted({p.split("/")[1] for p in ctx.repo.reader.list_files(ctx.repo.head, "apps/") if p.count("/") >= 2})
    if cmd.app not in known:
        raise CommandError(f"there is no app `{cmd.app}` under apps/", f"apps: {', '.join(f'`{a}`' for a in known) or 'none'}")
    path = f"{cluster.directory}/apps/kustomization.yaml"
    before = ctx.repo.reader.read(ctx.repo.head, path)
    if before is None:
        raise CommandError(f"`{cluster.name}` has no {path}", "onboard the cluster with fluxbot, or add that file first")
    present = [a.name for a in cluster.apps]
    release = _release(ctx, cmd.app)
    if cmd.action == "add":
        if cmd.app in present:
            raise CommandError(f"`{cmd.app}` already runs on `{cluster.name}`", f"change its values in {cluster.directory}/apps/values/")
        return (_add(ctx, cmd, cluster, path, before, release),)
    if cmd.app not in present:
        raise CommandError(f"`{cmd.app}` does not run on `{cluster.name}`",
                           f"apps on `{cluster.name}`: {', '.join(f'`{a}`' for a in present) or 'none'}")
    return (_remove(ctx, cmd, cluster, path, before, release),)


def _add(ctx: Context, cmd: AppChange, cluster: Cluster, path: str, before: bytes, release: dict[str, str]) -> ChangePlan:
    resource = posixpath.relpath(f"apps/{cmd.app}", f"{cluster.directory}/apps")
    after = append_item(before, 0, ("resources",), resource)
    edits = []
    if cmd.values:
        values_path = f"{cluster.directory}/apps/values/{cmd.app}.yaml"
        if ctx.repo.reader.read(ctx.repo.head, values_path) is not None:
            raise CommandError(f"{values_path} exists already", "remove it or edit it by hand")
        after = append_item(after, 0, ("patches",),
                            f"path: ./values/{cmd.app}.yaml\ntarget:\n  kind: HelmRelease\n  name: {release['name']}\n")
        edits.append(FileEdit(values_path, None, _values_patch(release, cmd.values)))
    edits.insert(0, FileEdit(path, before, after))
    return _plan(ctx, cmd, cluster, tuple(edits), f"Add {cmd.app} to {cluster.name}")


def _remove(ctx: Context, cmd: AppChange, cluster: Cluster, path: str, before: bytes, release: dict[str, str]) -> ChangePlan:
    data = documents(before)[0]
    index = next(i for i, r in enumerate(data.get("resources") or []) if posixpath.basename(str(r).rstrip("/")) == cmd.app)
    after = remove_item(before, 0, ("resources",), index)
    edits = []
    values_file = next((a.values_file for a in cluster.apps if a.name == cmd.app), None)
    patches = data.get("patches") or []
    for i in reversed(range(len(patches))):
        target = (patches[i] or {}).get("target") or {}
        if target.get("name") in (release["name"], cmd.app):
            after = remove_item(after, 0, ("patches",), i)
    if values_file and ctx.repo.reader.read(ctx.repo.head, values_file) is not None:
        edits.append(FileEdit(values_file, ctx.repo.reader.read(ctx.repo.head, values_file), b"", delete=True))
    edits.insert(0, FileEdit(path, before, after))
    return _plan(ctx, cmd, cluster, tuple(edits), f"Remove {cmd.app} from {cluster.name}",
                 _prune_notes(ctx, cluster, cmd.app, release))


def _prune_notes(ctx: Context, cluster: Cluster, app: str, release: dict[str, str]) -> tuple[str, ...]:
    """What Flux deletes once the removal merges: with `prune: true`, the app's objects go."""
    apps_path = f"./{cluster.directory}/apps"
    for path, doc in ctx.repo.yaml_documents(ctx.repo.head, f"{cluster.directory}/", apps_path.encode()[2:]):
        spec = doc.get("spec") if is_flux_kustomization(doc) else None
        if isinstance(spec, dict) and str(spec.get("path", "")).rstrip("/") in (apps_path, apps_path[2:]):
            if spec.get("prune") is True:
                where = f" (namespace `{release['namespace']}`)" if release["namespace"] else ""
                return (f"`prune: true` in {path}: Flux deletes {app}'s objects{where} from {cluster.name} once this merges"
                        + (" — a productive cluster" if cluster.productive else ""),)
            return (f"`prune` is off in {path}: Flux leaves {app}'s objects on {cluster.name}; delete them by hand",)
    return ()


def _plan(ctx: Context, cmd: AppChange, cluster: Cluster, edits: tuple[FileEdit, ...], title: str,
          notes: tuple[str, ...] = ()) -> ChangePlan:
    values = "".join(f"\n- `{'.'.join(k)}` = `{v!r}`" for k, v in cmd.values)
    body = (f"## {title}\n\n- Cluster: `{cluster.name}`" + (" (**productive**)" if cluster.productive else "")
            + f"\n- Files: " + ", ".join(f"`{e.path}`" for e in edits) + f"\n- Requested by: {ctx.requester}\n"
            + "".join(f"- {note}\n" for note in notes)
            + (f"\n### Values{values}\n" if values else ""))
    return ChangePlan(
        kind="app", cluster=cluster.name, branch=f"fluxbot/app-{cmd.action}-{cmd.app}-{cluster.name}", title=title,
        body=body, commit_message=f"feat({cluster.name}): {cmd.action} app {cmd.app}\n\nRequested-by: {ctx.requester}\n",
        edits=edits, labels=("fluxbot", "app", f"cluster:{cluster.name}") + (("productive",) if cluster.productive else ()),
        productive=cluster.productive, notes=notes,
    )


def _release(ctx: Context, app: str) -> dict[str, str]:
    """The app's HelmRelease name and namespace (the namespace its kustomization sets wins)."""
    name, namespace = app, ""
    for _path, doc in ctx.repo.yaml_documents(ctx.repo.head, f"apps/{app}/"):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "HelmRelease":
            name = str((doc.get("metadata") or {}).get("name", app))
            namespace = namespace or str((doc.get("metadata") or {}).get("namespace", ""))
        elif doc.get("kind") == "Kustomization" and doc.get("namespace"):
            namespace = str(doc["namespace"])
    return {"name": name, "namespace": namespace}


def _values_patch(release: dict[str, str], values: tuple[tuple[tuple[str, ...], Any], ...]) -> bytes:
    """A HelmRelease patch setting `spec.values`; strings are quoted, typed (`:=`) values keep their type."""
    metadata = {"name": release["name"]} | ({"namespace": release["namespace"]} if release["namespace"] else {})
    patch = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease", "metadata": metadata,
             "spec": {"values": quoted(values_tree(values))}}
    return dump_yaml(patch).encode()


SPEC = CommandSpec(
    verb="app",
    usage="app add <app> to <cluster> [set key=value|key:=json ...] | app remove <app> from <cluster>",
    summary="Open a PR that adds an app from apps/ to a cluster (with Helm values: strings, or JSON after `:=`) or removes it.",
    parse=parse,
    run=run,
    examples=("app add podinfo to prod-eu set image.tag=6.7.1 replicaCount:=2", "app remove podinfo from demo"),
    action="app",
    proposes=True,
    targets=lambda cmd: (cmd.cluster,),
)
