"""`onboard <cluster> [like <cluster>] [at <version>] [set key=value ...]`: a PR that adds a cluster."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from commands.args import check_name, resolve_cluster, resolve_version
from commands.context import CommandSpec, Context
from commands.layout import Layout
from commands.model import ChangePlan, Cluster, CommandError, FileEdit
from commands.repo import RepoSnapshot, documents, read_pin
from commands.substitute import infrastructure_texts, required_variables
from commands.values import parse_variables

_GITHUB = re.compile(r"github\.com[/:](?P<owner>[^/]+)/(?P<repo>[^/.]+)")
IDENTITY = "meta_cluster_name"  # always the new cluster's own name


@dataclass(frozen=True)
class Onboard:
    cluster: str
    like: str = ""
    version: str = ""
    values: tuple[tuple[str, str], ...] = ()


def parse(words: list[str]) -> Onboard:
    if not words:
        raise SPEC.usage_error("onboard needs the new cluster's name")
    cluster, rest, like, version, values = check_name(words[0], "cluster"), words[1:], "", "", ()
    while rest:
        head = rest[0].lower()
        if head == "like" and len(rest) >= 2:
            like, rest = check_name(rest[1], "cluster"), rest[2:]
        elif head == "at" and len(rest) >= 2:
            version, rest = check_name(rest[1], "version"), rest[2:]
        elif head == "set" and len(rest) >= 2:
            values, rest = parse_variables(rest[1:]), []
        else:
            raise SPEC.usage_error(f"`{rest[0][:80]}` is not understood here")
    return Onboard(cluster, like, version, values)


def run(cmd: Onboard, ctx: Context) -> tuple[ChangePlan, ...]:
    repo = ctx.repo
    if repo.cluster(cmd.cluster) is not None:
        raise CommandError(f"`{cmd.cluster}` already exists ({repo.directory(cmd.cluster)}/)", "choose a new name")
    if repo.layout.cluster_depth != 1 or repo.layout.clusters.strip("/") != "clusters" \
            or repo.layout.infrastructure.strip("/") != "infrastructure":
        raise CommandError("`onboard` writes the flux-demo layout (clusters/<cluster>/, ./infrastructure/) only",
                           "this repo's `layout` differs (cluster_depth, clusters or infrastructure): add the "
                           "cluster's directory by hand")
    template = resolve_cluster(repo, cmd.like) if cmd.like else None
    if template is not None and template.backref is None:
        raise CommandError(f"`{template.name}` cannot be copied: {template.problem}", "fix that file, or onboard like another cluster")
    version = resolve_version(repo, cmd.version) if cmd.version else repo.latest
    if version is None:
        raise CommandError("the repo has no release to onboard a cluster at", "release one first: `release v0.1.0`")
    variables = _variables(cmd, template, repo.layout)
    missing = sorted(required_variables(infrastructure_texts(repo, version)) - variables.keys())
    if missing:
        raise CommandError(
            f"the infrastructure at {version.tag} needs {', '.join(f'`{m}`' for m in missing)}, which `{cmd.cluster}` would not set",
            "add " + " ".join(f"`{m}=...`" for m in missing) + " after `set`" + ("" if cmd.like else ", or copy a cluster's with `like <cluster>`"),
        )
    url = _source_url(ctx, template)
    base = f"clusters/{cmd.cluster}"
    files: dict[str, bytes] = {
        f"{base}/infrastructure.yaml": infrastructure_yaml(url, f"tag: {version.tag}", variables).encode(),
        f"{base}/apps-base.yaml": apps_base_yaml(cmd.cluster).encode(),
    }
    copied, notes = _copy_apps(repo, template, base) if template else ({}, ())
    files.update(copied or {f"{base}/apps/kustomization.yaml":
                            b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n"})
    productive, shown = _productive(repo, cmd.cluster, variables.get("meta_productive", ""))
    bootstrap = _bootstrap_command(url, cmd.cluster)
    body = "\n".join([
        f"## Onboard `{cmd.cluster}` at `{version.tag}`", "",
        f"- Variables: " + ", ".join(f"`{k}={v}`" for k, v in variables.items()),
        f"- Like: `{cmd.like}`" if cmd.like else "- Like: (none)",
        f"- Productive: {shown}",
        f"- Requested by: {ctx.requester}",
        *(f"- {note}" for note in notes), "",
        "Flux itself is bootstrapped outside this PR:", "", "```sh", bootstrap, "```", "",
    ])
    return (ChangePlan(
        kind="onboard", cluster=cmd.cluster, branch=f"fluxbot/onboard-{cmd.cluster}",
        title=f"Onboard {cmd.cluster} at {version.tag}", body=body,
        commit_message=f"feat({cmd.cluster}): onboard cluster at {version.tag}\n\nRequested-by: {ctx.requester}\n",
        edits=tuple(FileEdit(path, None, content) for path, content in files.items()),
        labels=("fluxbot", "onboard", f"cluster:{cmd.cluster}") + (("productive",) if productive else ()),
        productive=productive, to_version=version.tag, notes=notes,
    ),)


def _productive(repo: RepoSnapshot, cluster: str, flag: str) -> tuple[bool, str]:
    """As `RepoSnapshot` decides it for existing clusters: the config first, unknown fails closed."""
    if cluster in repo.productive_overrides:
        value = repo.productive_overrides[cluster]
        return value, f"{'yes' if value else 'no'} (fluxbot.yaml: clusters.{cluster}.productive)"
    if flag.strip().lower() in ("true", "false"):
        return flag.strip().lower() == "true", "yes" if flag.strip().lower() == "true" else "no"
    return True, "unknown (treated as productive): `meta_productive` is not set to true or false"


def _variables(cmd: Onboard, template: Cluster | None, layout: Layout) -> dict[str, str]:
    """The template's shared variables, the new identity, and what `set` gives; per-cluster ones
    (`layout.per_cluster_variables`, `meta_*` by default) are never copied and must be given."""
    given = dict(cmd.values)
    inherited = {k: _string(v) for k, v in (template.variables if template else {}).items()}
    per_cluster = sorted(k for k in inherited if k != IDENTITY and layout.is_per_cluster(k) and k not in given)
    if template is not None and per_cluster:
        raise CommandError(
            f"{', '.join(f'`{k}`' for k in per_cluster)} differ per cluster, so they are not copied from `{template.name}`",
            f"give them for `{cmd.cluster}`: `set {' '.join(f'{k}=...' for k in per_cluster)}` "
            "(fluxbot.yaml `layout.per_cluster_variables` says which variables are per cluster)",
        )
    variables = {k: v for k, v in inherited.items() if not layout.is_per_cluster(k)}
    variables[IDENTITY] = cmd.cluster
    variables.update(given)
    return variables


def _copy_apps(repo: RepoSnapshot, template: Cluster, base: str) -> tuple[dict[str, bytes], tuple[str, ...]]:
    """The template's apps directory (kustomization, values files), and a line per app copied."""
    source = f"{template.directory}/apps/"
    files = {}
    for path in repo.reader.list_files(repo.head, source):
        raw = repo.reader.read(repo.head, path)
        if raw is not None:
            files[f"{base}/apps/{path[len(source):]}"] = raw
    apps = [
        f"app {app.name} (resource {app.resource}"
        + (f", values {base}/apps/{app.values_file[len(source):]})" if app.values_file else ")")
        for app in template.apps
    ]
    notes = (f"copied from {template.name}: " + "; ".join(apps),) if apps else ()
    if files and not apps:
        notes = (f"copied from {template.name}: {', '.join(sorted(files))}",)
    return files, notes


def _string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _source_url(ctx: Context, template: Cluster | None) -> str:
    clusters = [template] if template else ctx.repo.clusters
    for cluster in clusters:
        if cluster is not None and cluster.backref is not None:
            raw = ctx.repo.reader.read(ctx.repo.head, cluster.backref.path)
            doc = documents(raw)[cluster.backref.document] if raw else None
            if doc and read_pin(doc) is not None and doc.get("spec", {}).get("url"):
                return str(doc["spec"]["url"])
    raise CommandError("no existing cluster shows the repository URL to use", "onboard `like` an existing cluster")


def _bootstrap_command(url: str, cluster: str) -> str:
    match = _GITHUB.search(url)
    if match:
        return (f"flux bootstrap github --owner={match['owner']} --repository={match['repo']} "
                f"--branch=main --path=clusters/{cluster}")
    return f"flux bootstrap git --url={url} --branch=main --path=clusters/{cluster}"


def infrastructure_yaml(url: str, ref: str, variables: dict[str, str]) -> str:
    """A cluster's back-reference (`ref` is `tag: v1.2.3` or `branch: main`) and infrastructure Kustomization."""
    substitute = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in variables.items())
    substitute_block = f"    substitute:\n{substitute}" if variables else "    substitute: {}\n"
    return f"""apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: infrastructure
  namespace: flux-system
spec:
  interval: 1m
  url: {url}
  ref:
    {ref}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: infrastructure
  namespace: flux-system
spec:
  interval: 5m
  retryInterval: 1m
  timeout: 5m
  sourceRef:
    kind: GitRepository
    name: infrastructure
  path: ./infrastructure/
  prune: true
  wait: true
  postBuild:
{substitute_block}"""


def apps_base_yaml(cluster: str) -> str:
    """The Kustomization that deploys `clusters/<cluster>/apps/`."""
    return f"""apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps-base
  namespace: flux-system
spec:
  interval: 1m
  dependsOn:
    - name: infrastructure
  sourceRef:
    kind: GitRepository
    name: flux-system
  path: ./clusters/{cluster}/apps/
  prune: true
  wait: true
  timeout: 5m0s
"""


SPEC = CommandSpec(
    verb="onboard",
    usage="onboard <cluster> [like <cluster>] [at <version>] [set key=value ...]",
    summary="Open a PR that adds a cluster: its pinned back-reference, the `like` cluster's shared variables "
            "(never its identity: per-cluster ones are given with `set`) and its apps.",
    parse=parse,
    run=run,
    examples=("onboard prod-us like prod-eu set meta_network_zone=dmz-7 meta_productive=true",),
    action="onboard",
    proposes=True,
    targets=lambda cmd: (cmd.cluster,),
)
