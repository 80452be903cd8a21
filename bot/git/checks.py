"""Quality gates run on a change after it is committed locally and before anything is pushed.

Every changed file parses as YAML. Then the change is rendered the way Flux applies it: the cluster
directory (what its `flux-system` Kustomization applies), and every Flux `Kustomization` found in a
render whose source is the repository itself (a `GitRepository` with the same URL as the cluster's
back-reference), at that source's revision (the pinned tag for the infrastructure), with its own
`postBuild.substitute` as its parent's render left it (patches applied, variables substituted),
recursively: bounded depth, cycles refused. A variable used without a value at any level stops the
change, naming the object, its file and the Kustomization that lacks it. Every rendered object is
validated against its schema (`bot.git.schemas`). The PR body reports each level.

Renders are cached by the git trees they read (`bot.git.render`): a tag's infrastructure renders
once for every cluster promoted to it, and a repeated change costs no render at all.
"""
from __future__ import annotations

import posixpath
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

from ruamel.yaml.error import YAMLError

from bot.git.render import NOTHING_PUSHED, Renderer, isolation, origin
from bot.git.schemas import Schemas, builtin_version
from commands.model import ChangePlan, CommandError, Pin
from commands.repo import CLUSTERS_DIR, INFRASTRUCTURE_DIR, RepoSnapshot, documents, read_pin
from commands.substitute import substitute
from commands.yamledit import load_documents

_YAML = (".yaml", ".yml")
# How deep Flux Kustomizations may nest below the cluster (cluster -> infrastructure -> component
# is 2). Real fleets use two or three; the bound turns a runaway chain into a refusal.
MAX_DEPTH = 5
_FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io/"
_FLUX_SOURCE = "source.toolkit.fluxcd.io/"
# Flux skips substitution for objects marked so (label or annotation), see
# https://fluxcd.io/flux/components/kustomize/kustomizations/#post-build-variable-substitution
_SUBSTITUTE_DISABLED = "kustomize.toolkit.fluxcd.io/substitute"


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        # Nested levels carry their depth as leading spaces: a nested Markdown list.
        items = [f"{' ' * (len(line) - len(line.lstrip(' ')))}- {line.lstrip(' ')}" for line in self.lines]
        return "\n### Checks before this PR\n\n" + "\n".join(items) + "\n"


@dataclass(frozen=True)
class Source:
    """A GitRepository of the repo itself: the git ref fluxbot renders it at, and how to say it."""

    ref: str
    where: str


@dataclass(frozen=True)
class Layer:
    """One render of the tree Flux applies: a directory at a revision, and who applies it."""

    directory: str
    source: Source
    owner: str  # "Kustomization flux-system/nginx (infrastructure/nginx/base.yaml at v0.4.0)"; "" for the cluster
    variables: Mapping[str, object] | None  # None: no postBuild, nothing is substituted
    external_variables: bool  # substituteFrom: values fluxbot cannot see
    depth: int
    ancestry: tuple[tuple[str, str], ...]  # (ref, directory) of every layer above
    label: str
    hint: str


@dataclass
class _Rendered:
    layer: Layer
    objects: list[Any]


def run_checks(plan: ChangePlan, commit: str, files: Mapping[str, bytes | None], snapshot: RepoSnapshot,
               renderer: Renderer, default_branch: str = "") -> CheckReport:
    """Check the change committed as `commit`; raises CommandError on the first failure.

    `files` holds the changed files' new content (None: deleted), `snapshot` reads the tree at
    `commit`. Sibling layers render side by side.
    """
    report = CheckReport()
    changed = [path for path, content in files.items() if content is not None and path.endswith(_YAML)]
    for path in changed:
        try:
            docs = documents(files[path] or b"")
        except ValueError as error:
            raise CommandError(f"quality gate: {path} is not valid YAML ({error})", NOTHING_PUSHED) from None
        _check_objects(path, [d for d in docs if d is not None], manifests=not path.endswith("kustomization.yaml"))
    if changed:
        report.lines.append(f"✓ {len(changed)} changed YAML file(s) parse")
    cluster = snapshot.cluster(plan.cluster) if plan.cluster else None
    if cluster is None:
        return report
    if not renderer.kubectl:
        report.lines.append("skipped: rendering with `kubectl kustomize` (kubectl is not installed here)")
        return report
    walk = _Walk(plan.cluster, commit, default_branch, cluster.pin, cluster.backref.name if cluster.backref else "",
                 renderer, report)
    walk.run()
    return report


class _Walk:
    """The tree of renders for one cluster, level by level."""

    def __init__(self, cluster: str, commit: str, default_branch: str, pin: Pin | None, backref: str,
                 renderer: Renderer, report: CheckReport) -> None:
        self.cluster, self.commit, self.default_branch = cluster, commit, default_branch
        self.pin, self.backref, self.renderer, self.report = pin, backref, renderer, report
        self.sources: dict[tuple[str, str], Source | None] = {}
        self.schemas = Schemas()
        self.rendered: list[_Rendered] = []
        self.skipped: list[str] = []

    def run(self) -> None:
        directory = f"{CLUSTERS_DIR}/{self.cluster}"
        here = Source(self.commit, "this change's tree")
        root = Layer(directory, here, "", None, False, 0, (), directory, "")
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="render") as pool:
            prefetch = self._prefetch(pool)
            level = [root]
            while level:
                texts = [pool.submit(self.renderer.render, layer.source.ref, layer.directory, layer.label) for layer in level]
                children: list[Layer] = []
                for layer, text in zip(level, texts):
                    children += self._layer(layer, _result(text, layer))
                level = children
            for future in prefetch:
                future.cancel()
        if self.pin is not None and not any(r.layer.directory == INFRASTRUCTURE_DIR for r in self.rendered):
            # The cluster's files name a back-reference, but nothing in what its directory renders
            # applies the infrastructure from it: say so rather than pass silently.
            self.skipped.append(f"{INFRASTRUCTURE_DIR}/ at {self.pin} (no Flux Kustomization in the render of "
                                f"{CLUSTERS_DIR}/{self.cluster} applies it from GitRepository `{self.backref}`)")
        self._validate()
        total = sum(len(r.objects) for r in self.rendered)
        skipped = f"; not rendered: {'; '.join(self.skipped)}" if self.skipped else ""
        self.report.lines.append(f"✓ rendered as Flux applies it: {len(self.rendered)} renders, {total} objects in all, "
                                 f"`kubectl kustomize` run {isolation().description}{skipped}")

    def _prefetch(self, pool: ThreadPoolExecutor) -> list[Future[str]]:
        # The infrastructure's render does not depend on the cluster's: start it at once (the walk
        # then finds it in flight or cached) so a cold promotion renders both side by side.
        source = self._pin_source(self.pin)
        if source is None:
            return []
        label = f"{INFRASTRUCTURE_DIR}/ at {source.where}"
        return [pool.submit(self.renderer.render, source.ref, INFRASTRUCTURE_DIR, label)]

    def _layer(self, layer: Layer, text: str) -> list[Layer]:
        raw = _parse(text, layer.label)
        if layer.variables is not None:
            text = self._substitute(layer, text, raw)
        objects = _check_objects(layer.label, _parse(text, layer.label))
        self.rendered.append(_Rendered(layer, objects))
        self.schemas.learn((obj, origin(obj, layer.directory) or layer.label) for obj in objects)
        if layer.depth == 0:
            self.report.lines.append(f"✓ {layer.directory} renders with `kubectl kustomize` ({len(objects)} objects)")
            self._learn_sources(objects)
        else:
            self.report.lines.append(self._line(layer, len(objects)))
        return [child for obj in objects if (child := self._child(layer, obj)) is not None]

    def _line(self, layer: Layer, count: int) -> str:
        indent = "  " * (layer.depth - 1)
        if layer.variables is None:
            words = "renders (no postBuild: nothing substituted)"
        elif layer.external_variables:
            words = "renders; variables from substituteFrom are not visible here and were not checked"
        else:
            words = "renders, none undefined"
        if layer.depth == 1 and layer.directory == INFRASTRUCTURE_DIR and layer.variables is not None:
            return f"{indent}✓ infrastructure at {layer.source.where} renders with {self.cluster}'s variables, " \
                   f"{'none undefined' if not layer.external_variables else 'substituteFrom not checked'} ({count} objects)"
        return f"{indent}✓ {layer.owner.split(' (')[0]}: ./{layer.directory} at {layer.source.where} {words} ({count} objects)"

    # -- sources and children ----------------------------------------------------------------------

    def _learn_sources(self, objects: list[Any]) -> None:
        """The GitRepositories of the cluster that are the repo itself (same URL as the back-reference)."""
        repos = [o for o in objects if isinstance(o, dict) and o.get("kind") == "GitRepository"
                 and str(o.get("apiVersion", "")).startswith(_FLUX_SOURCE)]
        own = next((_url(r) for r in repos if _meta(r, "name") == self.backref), None)
        for repo in repos:
            if own is not None and _url(repo) == own:
                self.sources[(_meta(repo, "namespace"), _meta(repo, "name"))] = self._pin_source(read_pin(repo))

    def _pin_source(self, pin: Pin | None) -> Source | None:
        if pin is None:
            return None
        if pin.kind == "tag":
            return Source(f"refs/tags/{pin.value}", pin.value)
        if pin.kind == "branch":
            if pin.value == self.default_branch or not self.default_branch:
                return Source(self.commit, f"branch `{pin.value}` (this change's tree)")
            return Source(f"refs/heads/{pin.value}", f"branch `{pin.value}`")
        if pin.kind == "commit":
            return Source(pin.value, f"commit {pin.value[:12]}")
        return None  # a semver range: the tag Flux selects is not resolved here

    def _child(self, parent: Layer, obj: Any) -> Layer | None:
        if not (isinstance(obj, dict) and obj.get("kind") == "Kustomization"
                and str(obj.get("apiVersion", "")).startswith(_FLUX_KUSTOMIZE)):
            return None
        spec = obj.get("spec") or {}
        ref = spec.get("sourceRef") or {}
        namespace, name = _meta(obj, "namespace"), _meta(obj, "name")
        owner_file = origin(obj, parent.directory)
        owner = f"Kustomization {namespace}/{name}" + (f" ({owner_file} at {parent.source.where})" if owner_file else "")
        key = (str(ref.get("namespace") or namespace), str(ref.get("name") or ""))
        if ref.get("kind", "GitRepository") != "GitRepository" or key not in self.sources:
            if parent.depth > 0:
                self.skipped.append(f"Kustomization {namespace}/{name} (its source is not this repository)")
            return None
        source = self.sources[key]
        if source is None:
            self.skipped.append(f"Kustomization {namespace}/{name} (its GitRepository `{key[1]}` has a semver range)")
            return None
        directory = posixpath.normpath(str(spec.get("path") or ".")).lstrip("/")
        directory = "" if directory == "." else directory.removeprefix("./")
        if not directory:
            self.skipped.append(f"Kustomization {namespace}/{name} (it applies the whole repository)")
            return None
        here = (source.ref, directory)
        ancestry = parent.ancestry + ((parent.source.ref, parent.directory),)
        if directory == ancestry[0][1]:
            # The cluster's own flux-system Kustomization applies the directory being checked (at
            # whichever branch it tracks): that is the root, not a cycle.
            return None
        if here == ancestry[-1] and owner.split(" (")[0] == parent.owner.split(" (")[0]:
            # The Kustomization that applies this layer, found in it again (a component's base.yaml in a
            # directory without kustomization.yaml, as flux-demo's infrastructure/rbac-manager/ on main):
            # Flux re-applies itself, like flux-system does; no new layer and no cycle.
            return None
        if here in ancestry:
            raise CommandError(
                f"quality gate: {owner} applies ./{directory}, which is already applied above it: a cycle "
                f"({' -> '.join('./' + d for _, d in ancestry[1:])} -> ./{directory})",
                "point its spec.path at a directory below, not at one of its own parents")
        depth = parent.depth + 1
        if depth > MAX_DEPTH:
            raise CommandError(
                f"quality gate: {owner} is nested deeper than {MAX_DEPTH} levels of Flux Kustomizations",
                "flatten the layers (fluxbot renders at most that many)")
        post = spec.get("postBuild")
        variables = None
        if isinstance(post, dict):
            variables = dict(post.get("substitute") or {}) if isinstance(post.get("substitute") or {}, dict) else {}
        if depth == 1 and directory == INFRASTRUCTURE_DIR:
            hint = f"add them to `{self.cluster}`'s `postBuild.substitute`, or give them defaults (`${{name:=default}}`)"
        else:
            patches = f"{parent.directory}/kustomization.yaml" if parent.depth else "its file"
            hint = (f"add them to the `postBuild.substitute` of Kustomization {namespace}/{name} (or to the patch in "
                    f"{patches} that sets it), or give them defaults (`${{name:=default}}`)")
        label = f"{directory}/ at {source.where}"
        return Layer(directory, source, owner, variables, bool(isinstance(post, dict) and post.get("substituteFrom")),
                     depth, ancestry, label, hint)

    # -- substitution and validation ---------------------------------------------------------------

    def _substitute(self, layer: Layer, text: str, objects: list[Any]) -> str:
        """Flux's post-build substitution, object by object; undefined variables stop the change."""
        assert layer.variables is not None
        documents_text = _split(text)
        if len(documents_text) != len(objects):  # not kustomize's usual output: substitute as a whole
            documents_text, objects = [text], [None]
        out, problems = [], []
        for doc, obj in zip(documents_text, objects):
            if obj is not None and _substitution_disabled(obj):
                out.append(doc)
                continue
            new, undefined = substitute(doc, layer.variables)
            out.append(new)
            if undefined and obj is not None:
                problems.append((undefined, obj))
            elif undefined:
                problems.append((undefined, {}))
        if problems and not layer.external_variables:
            names = sorted({v for undefined, _ in problems for v in undefined})
            variables = ", ".join(f"`${{{v}}}`" for v in names)
            users = "; ".join(_describe(obj, layer, by=False) for _, obj in problems[:3] if obj)
            if layer.depth == 1 and layer.directory == INFRASTRUCTURE_DIR:
                raise CommandError(
                    f"quality gate: the infrastructure at {layer.source.where} uses {variables}, which "
                    f"`{self.cluster}` does not set" + (f" (used by {users})" if users else ""), layer.hint)
            raise CommandError(
                f"quality gate: {variables} {'is' if len(names) == 1 else 'are'} used by {users or './' + layer.directory} "
                f"but not set by {layer.owner}", layer.hint)
        return "---\n".join(out) if len(out) > 1 else out[0]

    def _validate(self) -> None:
        checked, unknown = 0, set()
        for rendered in self.rendered:
            for obj in rendered.objects:
                if not self.schemas.known(obj):
                    unknown.add(str(obj.get("kind")))
                    continue
                problem = self.schemas.check(obj)
                checked += 1
                if problem is not None:
                    raise CommandError(
                        f"quality gate: {_describe(obj, rendered.layer)} is not valid: `{problem.field}`: {problem.message}",
                        "fix that field; " + NOTHING_PUSHED)
        crds = f"CRDs from {', '.join(sorted(self.schemas.crd_sources))}" if self.schemas.crd_sources else "no CRDs in the repo"
        unvalidated = f"; no schema for {', '.join(sorted(unknown))}" if unknown else ""
        self.report.lines.append(f"✓ {checked} rendered objects valid against their schemas (Kubernetes "
                                 f"{builtin_version()} built-in kinds, {crds}){unvalidated}")


def _describe(obj: Any, layer: Layer, by: bool = True) -> str:
    """`HelmRelease ingress-nginx/ingress-nginx (infrastructure/nginx/release.yaml at v0.4.0, applied by ...)`."""
    if not isinstance(obj, dict):
        return f"an object in {layer.label}"
    name = f"{_meta(obj, 'namespace') + '/' if _meta(obj, 'namespace') else ''}{_meta(obj, 'name')}"
    file = origin(obj, layer.directory) or layer.directory
    applied = f", applied by {layer.owner}" if layer.owner and by else ""
    return f"{obj.get('kind', 'object')} {name} ({file} at {layer.source.where}{applied})"


def _result(future: Future[str], layer: Layer) -> str:
    try:
        return future.result()
    except CommandError as error:
        if layer.depth > 1 and layer.owner not in error.what:
            raise CommandError(f"{error.what} (applied by {layer.owner})", error.hint) from None
        raise


def _meta(obj: Any, key: str) -> str:
    return str(((obj.get("metadata") or {}) if isinstance(obj, dict) else {}).get(key) or "")


def _url(repo: Any) -> str:
    url = str((repo.get("spec") or {}).get("url") or "").strip().rstrip("/")
    return re.sub(r"\.git$", "", url).lower()


def _substitution_disabled(obj: Any) -> bool:
    meta = obj.get("metadata") or {} if isinstance(obj, dict) else {}
    return any(str((meta.get(where) or {}).get(_SUBSTITUTE_DISABLED, "")).lower() == "disabled"
               for where in ("labels", "annotations"))


def _split(text: str) -> list[str]:
    parts = re.split(r"(?m)^---\s*\n", text)
    return [p for p in parts if p.strip()]


def _parse(text: str, label: str) -> list[Any]:
    try:
        return list(_rendered_objects(text))
    except YAMLError as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise CommandError(f"quality gate: {label} renders to invalid YAML ({reason})") from None


@lru_cache(maxsize=32)
def _rendered_objects(text: str) -> tuple[Any, ...]:
    # Renders can be megabytes (Flux's own components); a few are kept parsed, not thousands.
    return tuple(d for d in load_documents(text) if d is not None)


def _check_objects(label: str, objects: list[Any], manifests: bool = True) -> list[Any]:
    for index, obj in enumerate(objects):
        if not manifests:
            continue
        name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else None
        missing = [k for k, ok in (("apiVersion", isinstance(obj, dict) and obj.get("apiVersion")),
                                   ("kind", isinstance(obj, dict) and obj.get("kind")), ("metadata.name", name)) if not ok]
        if missing:
            what = f"{obj.get('kind', 'object')} {name or '#' + str(index + 1)}" if isinstance(obj, dict) else f"document {index + 1}"
            raise CommandError(f"quality gate: {what} in {label} has no {', '.join(missing)}", NOTHING_PUSHED)
    return objects
