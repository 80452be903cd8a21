"""Quality gates run on a change after it is committed locally and before anything is pushed.

Every changed file parses as YAML; the changed cluster renders with `kubectl kustomize` (the way
Flux generates a kustomization for a directory without one); the infrastructure its pin points at
renders and every `${var}` in it is defined by the cluster's `postBuild.substitute`; every rendered
object has `apiVersion`, `kind` and `metadata.name`. A failure stops the change with the file,
object and message; a check that cannot run here says it was skipped.

A render is a pure function of the git trees it reads and of the kustomize binary, so renders are
cached on disk by exactly that: the infrastructure of a tag is rendered once, however many clusters
are promoted to it, and a repeated change costs no render at all.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from ruamel.yaml.error import YAMLError

from commands.model import ChangePlan, CommandError
from commands.repo import CLUSTERS_DIR, INFRASTRUCTURE_DIR, RepoSnapshot, documents
from commands.substitute import substitute
from commands.yamledit import load_documents

_YAML = (".yaml", ".yml")
_KEEP_RENDERS = 512


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n### Checks before this PR\n\n" + "\n".join(f"- {line}" for line in self.lines) + "\n"


class GitTrees(Protocol):
    """What the checks need from git: tree ids to key renders by, and an export to render from."""

    def tree_entries(self, ref: str, path: str) -> list[tuple[str, str]]: ...  # (name, object id); [] if absent

    def export(self, ref: str, paths: Sequence[str], target: Path) -> None: ...


class RenderCache:
    """Rendered YAML on disk, keyed by the trees rendered and the kustomize binary that did it."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.hits = self.misses = 0

    def get(self, key: str) -> str | None:
        if self.directory is None:
            return None
        try:
            text = (self.directory / f"{key}.yaml").read_text()
        except FileNotFoundError:
            self.misses += 1
            return None
        self.hits += 1
        return text

    def put(self, key: str, text: str) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(scratch, self.directory / f"{key}.yaml")
        renders = list(self.directory.glob("*.yaml"))
        if len(renders) > _KEEP_RENDERS:
            # Oldest out; another thread may be pruning too, so a file can vanish meanwhile.
            for stale in sorted(renders, key=_age)[:-_KEEP_RENDERS]:
                stale.unlink(missing_ok=True)


@dataclass
class Renderer:
    """`kubectl kustomize` of a directory of a git tree, through the render cache."""

    trees: GitTrees
    cache: RenderCache
    kubectl: str | None = field(default_factory=lambda: shutil.which("kubectl"))

    def render(self, ref: str, directory: str, label: str) -> str:
        """The kustomize output of `directory` at `ref`; raises CommandError if it does not build."""
        assert self.kubectl
        top = directory.split("/", 1)[0]
        # What a directory may load: itself and the repo around it (`../../apps/x`), but not the
        # clusters, so no render (a cluster's, or the infrastructure's) depends on, or exports, a
        # thousand cluster directories.
        entries = [(name, oid) for name, oid in self.trees.tree_entries(ref, "") if name not in (top, CLUSTERS_DIR)]
        entries += [(directory, oid) for oid in self._tree_id(ref, directory)]
        key = _key(self._kubectl_identity(), directory, entries)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory(prefix="fluxbot-render-") as scratch:
            root = Path(scratch)
            self.trees.export(ref, [name for name, _ in entries], root)
            text = _render_dir(self.kubectl, root / directory, label)
        self.cache.put(key, text)
        return text

    def _tree_id(self, ref: str, directory: str) -> list[str]:
        parent, _, name = directory.rpartition("/")
        return [oid for entry, oid in self.trees.tree_entries(ref, parent) if entry == name]

    def _kubectl_identity(self) -> str:
        stat = os.stat(self.kubectl or "")
        return f"{os.path.realpath(self.kubectl or '')}:{stat.st_size}:{stat.st_mtime_ns}"


def _age(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def run_checks(plan: ChangePlan, commit: str, files: Mapping[str, bytes | None], snapshot: RepoSnapshot,
               renderer: Renderer) -> CheckReport:
    """Check the change committed as `commit`; raises CommandError on the first failure.

    `files` holds the changed files' new content (None: deleted), `snapshot` reads the tree at
    `commit`. The cluster and the infrastructure it pins render side by side.
    """
    report = CheckReport()
    changed = [path for path, content in files.items() if content is not None and path.endswith(_YAML)]
    for path in changed:
        try:
            docs = documents(files[path] or b"")
        except ValueError as error:
            raise CommandError(f"quality gate: {path} is not valid YAML ({error})", "nothing was pushed") from None
        _check_objects(path, [d for d in docs if d is not None], manifests=not path.endswith("kustomization.yaml"))
    if changed:
        report.lines.append(f"✓ {len(changed)} changed YAML file(s) parse")
    cluster = snapshot.cluster(plan.cluster) if plan.cluster else None
    if cluster is None:
        return report
    if not renderer.kubectl:
        report.lines.append("skipped: rendering with `kubectl kustomize` (kubectl is not installed here)")
        return report
    directory = f"{CLUSTERS_DIR}/{plan.cluster}"
    pin = cluster.pin
    infra_ref, where = ((f"refs/tags/{pin.value}", pin.value) if pin is not None and pin.kind == "tag" else
                        (commit, f"{pin} (this change's tree)"))
    jobs: dict[str, Callable[[], str]] = {"cluster": lambda: renderer.render(commit, directory, directory)}
    if pin is not None:
        jobs["infra"] = lambda: renderer.render(infra_ref, INFRASTRUCTURE_DIR, f"{INFRASTRUCTURE_DIR}/ at {where}")
    rendered = _all(jobs)
    objects = _check_objects(directory, _parse(rendered["cluster"], directory))
    report.lines.append(f"✓ {directory} renders with `kubectl kustomize` ({len(objects)} objects)")
    if pin is None:
        return report
    text, undefined = substitute(rendered["infra"], cluster.variables)
    if undefined:
        raise CommandError(
            f"quality gate: the infrastructure at {where} uses {', '.join(f'`${{{v}}}`' for v in undefined)}, "
            f"which `{plan.cluster}` does not set",
            "add them to its `postBuild.substitute`, or give them defaults (`${name:=default}`)",
        )
    infra_objects = _check_objects(f"{INFRASTRUCTURE_DIR}/ at {where}", _parse(text, where))
    report.lines.append(f"✓ infrastructure at {where} renders with {plan.cluster}'s variables, none undefined "
                        f"({len(infra_objects)} objects)")
    return report


def _all(jobs: dict[str, Callable[[], str]]) -> dict[str, str]:
    """Run the renders side by side; the first failure (in job order) is the one reported."""
    if len(jobs) == 1:
        return {name: job() for name, job in jobs.items()}
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="render") as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def _render_dir(kubectl: str, root: Path, label: str) -> str:
    if not root.is_dir():
        raise CommandError(f"quality gate: {label} does not exist", "nothing was pushed")
    if not (root / "kustomization.yaml").exists():
        # Flux generates a kustomization for a path without one; do the same (in the scratch copy).
        resources = "".join(f"  - {r}\n" for r in _flux_resources(root, root))
        (root / "kustomization.yaml").write_text(
            f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}")
    return _kustomize(kubectl, root, label)


def _flux_resources(root: Path, directory: Path) -> list[str]:
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            if (entry / "kustomization.yaml").exists():
                found.append(str(entry.relative_to(root)))
            else:
                found += _flux_resources(root, entry)
        elif entry.suffix in _YAML and entry.name != "kustomization.yaml":
            found.append(str(entry.relative_to(root)))
    return found


def _kustomize(kubectl: str, directory: Path, label: str) -> str:
    run = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KUBECONFIG": os.devnull})
    if run.returncode != 0:
        message = (run.stderr.strip().splitlines() or ["kustomize failed"])[-1]
        if ' err="' in message:  # kubectl's klog prefix: keep kustomize's own words
            message = message.split(' err="', 1)[1].rstrip('"').replace('\\"', '"')
        message = message.replace(str(directory), label)
        raise CommandError(f"quality gate: {label} does not render: {message}", "nothing was pushed")
    return run.stdout


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
            raise CommandError(f"quality gate: {what} in {label} has no {', '.join(missing)}", "nothing was pushed")
    return objects
