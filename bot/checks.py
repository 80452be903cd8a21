"""Quality gates run on a change's worktree before anything is pushed.

Every changed file parses as YAML; the changed cluster renders with `kubectl kustomize` (the way
Flux generates a kustomization for a directory without one); the infrastructure its pin points at
renders and every `${var}` in it is defined by the cluster's `postBuild.substitute`; every rendered
object has `apiVersion`, `kind` and `metadata.name`. A failure stops the change with the file,
object and message; a check that cannot run here says it was skipped.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

from commands.model import ChangePlan, CommandError
from commands.repo import INFRASTRUCTURE_DIR, RepoSnapshot, documents
from commands.substitute import substitute

_YAML = (".yaml", ".yml")


@dataclass
class CheckReport:
    lines: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return "\n### Checks before this PR\n\n" + "\n".join(f"- {line}" for line in self.lines) + "\n"


class DirectoryReader:
    """`TreeReader` over a checked-out tree (the worktree of the change), at its one state."""

    head = "WORKTREE"

    def __init__(self, root: Path) -> None:
        self.root = root

    def list_files(self, ref: str, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and ".git" not in p.parts)

    def read(self, ref: str, path: str) -> bytes | None:
        file = self.root / path
        return file.read_bytes() if file.is_file() else None

    def tags(self) -> dict[str, str]:
        return {}

    def history(self, ref: str, path: str) -> Iterator[tuple[str, bytes | None]]:
        return iter(())

    def changed_files(self, old: str, new: str, prefix: str) -> list[str]:
        return []


def run_checks(tree: Path, plan: ChangePlan, mirror: Path, kubectl: str | None = None) -> CheckReport:
    """Check the change in `tree`; raises CommandError on the first failure."""
    report = CheckReport()
    changed = [e.path for e in plan.edits if not e.delete and e.path.endswith(_YAML)]
    for path in changed:
        try:
            docs = documents((tree / path).read_bytes())
        except ValueError as error:
            raise CommandError(f"quality gate: {path} is not valid YAML ({error})", "nothing was pushed") from None
        _check_objects(path, [d for d in docs if d is not None], manifests=not path.endswith("kustomization.yaml"))
    if changed:
        report.lines.append(f"✓ {len(changed)} changed YAML file(s) parse")
    if not plan.cluster or not (tree / "clusters" / plan.cluster).is_dir():
        return report
    kubectl = kubectl if kubectl is not None else shutil.which("kubectl")
    if not kubectl:
        report.lines.append("skipped: rendering with `kubectl kustomize` (kubectl is not installed here)")
        return report
    objects = _render_cluster(kubectl, tree, f"clusters/{plan.cluster}")
    report.lines.append(f"✓ clusters/{plan.cluster} renders with `kubectl kustomize` ({len(objects)} objects)")
    cluster = RepoSnapshot(DirectoryReader(tree)).cluster(plan.cluster)
    if cluster is None or cluster.pin is None:
        return report
    with tempfile.TemporaryDirectory(prefix="fluxbot-infra-") as scratch:
        if cluster.pin.kind == "tag":
            root = Path(scratch)
            _export(mirror, cluster.pin.value, INFRASTRUCTURE_DIR, root)
            where = cluster.pin.value
        else:
            root, where = tree, f"{cluster.pin} (this change's tree)"
        rendered = _render_dir(kubectl, root / INFRASTRUCTURE_DIR, f"{INFRASTRUCTURE_DIR}/ at {where}")
    text, undefined = substitute(rendered, cluster.variables)
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


def _render_cluster(kubectl: str, tree: Path, directory: str) -> list[Any]:
    return _check_objects(directory, _parse(_render_dir(kubectl, tree / directory, directory), directory))


def _render_dir(kubectl: str, root: Path, label: str) -> str:
    generated = None
    if not (root / "kustomization.yaml").exists():
        # Flux generates a kustomization for a path without one; do the same, and remove it after.
        generated = root / "kustomization.yaml"
        resources = "".join(f"  - {r}\n" for r in _flux_resources(root, root))
        generated.write_text(f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}")
    try:
        return _kustomize(kubectl, root, label)
    finally:
        if generated is not None:
            generated.unlink()


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
        return [d for d in documents(text.encode()) if d is not None]
    except ValueError as error:
        raise CommandError(f"quality gate: {label} renders to invalid YAML ({error})") from None


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


def _export(mirror: Path, ref: str, path: str, target: Path) -> None:
    archive = subprocess.run(["git", "archive", "--format=tar", ref, path], cwd=mirror, capture_output=True, timeout=120)
    if archive.returncode != 0:
        raise CommandError(f"quality gate: cannot read {path}/ at {ref}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
