"""`onboard <cluster> [like <cluster>] [at <version>] [set key=value ...]`: a PR that adds a cluster."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from commands.args import check_name, resolve_cluster, resolve_version
from commands.context import CommandSpec, Context
from commands.model import ChangePlan, Cluster, CommandError, FileEdit
from commands.repo import documents, read_pin
from commands.substitute import infrastructure_texts, required_variables

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GITHUB = re.compile(r"github\.com[/:](?P<owner>[^/]+)/(?P<repo>[^/.]+)")


@dataclass(frozen=True)
class Onboard:
    cluster: str
    like: str = ""
    version: str = ""
    values: tuple[tuple[str, str], ...] = ()


def parse_assignments(words: list[str], key_pattern: re.Pattern[str] = _KEY) -> tuple[tuple[str, str], ...]:
    """`a=1 b.c=x` -> (('a', '1'), ('b.c', 'x')); refuses anything else."""
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key_pattern.match(key):
            raise CommandError(f"`{word}` is not a `key=value` setting", "write settings as `set name=value name2=value2`")
        pairs.append((key, value))
    return tuple(pairs)


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
            values, rest = parse_assignments(rest[1:]), []
        else:
            raise SPEC.usage_error(f"`{rest[0]}` is not understood here")
    return Onboard(cluster, like, version, values)


def run(cmd: Onboard, ctx: Context) -> tuple[ChangePlan, ...]:
    repo = ctx.repo
    if repo.cluster(cmd.cluster) is not None:
        raise CommandError(f"`{cmd.cluster}` already exists (clusters/{cmd.cluster}/)", "choose a new name")
    template = resolve_cluster(repo, cmd.like) if cmd.like else None
    version = resolve_version(repo, cmd.version) if cmd.version else repo.latest
    if version is None:
        raise CommandError("the repo has no release to onboard a cluster at", "release one first: `release v0.1.0`")
    variables: dict[str, str] = {k: _string(v) for k, v in (template.variables if template else {}).items()}
    variables.update(cmd.values)
    missing = sorted(required_variables(infrastructure_texts(repo, version)) - variables.keys())
    if missing:
        raise CommandError(
            f"the infrastructure at {version.tag} needs {', '.join(f'`{m}`' for m in missing)}, which `{cmd.cluster}` would not set",
            "add " + " ".join(f"`{m}=...`" for m in missing) + " after `set`" + ("" if cmd.like else ", or copy a cluster's with `like <cluster>`"),
        )
    url = _source_url(ctx, template)
    base = f"clusters/{cmd.cluster}"
    files = {
        f"{base}/infrastructure.yaml": infrastructure_yaml(url, f"tag: {version.tag}", variables),
        f"{base}/apps-base.yaml": apps_base_yaml(cmd.cluster),
        f"{base}/apps/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n",
    }
    productive = variables.get("meta_productive", "").lower() == "true"
    bootstrap = _bootstrap_command(url, cmd.cluster)
    body = "\n".join([
        f"## Onboard `{cmd.cluster}` at `{version.tag}`", "",
        f"- Variables: " + ", ".join(f"`{k}={v}`" for k, v in variables.items()),
        f"- Like: `{cmd.like}`" if cmd.like else "- Like: (none)",
        f"- Productive: {'yes' if productive else 'no'}",
        f"- Requested by: {ctx.requester}", "",
        "Flux itself is bootstrapped outside this PR:", "", "```sh", bootstrap, "```", "",
    ])
    return (ChangePlan(
        kind="onboard", cluster=cmd.cluster, branch=f"fluxbot/onboard-{cmd.cluster}",
        title=f"Onboard {cmd.cluster} at {version.tag}", body=body,
        commit_message=f"feat({cmd.cluster}): onboard cluster at {version.tag}\n\nRequested-by: {ctx.requester}\n",
        edits=tuple(FileEdit(path, None, text.encode()) for path, text in files.items()),
        labels=("fluxbot", "onboard", f"cluster:{cmd.cluster}") + (("productive",) if productive else ()),
        productive=productive, to_version=version.tag,
    ),)


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
    summary="Open a PR that adds a cluster: its pinned infrastructure back-reference, variables and apps.",
    parse=parse,
    run=run,
    examples=("onboard prod-us like prod-eu set meta_cluster_name=prod-us",),
    action="onboard",
    proposes=True,
    targets=lambda cmd: (cmd.cluster,),
)
