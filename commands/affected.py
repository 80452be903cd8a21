"""Which clusters a change to the repo reaches, and how: rendered now, or with the next release.

The rules are `commands.impact`'s (a file under `clusters/<c>/` affects `c`, `apps/<a>/` the
clusters that deploy `a`, `infrastructure/` the clusters that track a branch), applied to base and
head, with renames counted on both their paths. A cluster pinned to a tag (or a semver range, or a
commit) does not see an `infrastructure/` change until its pin moves: it is reported as shipping
with the next release instead of being rendered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from commands.layout import Layout
from commands.repo import RepoSnapshot

APPS_DIR = "apps"  # the apps a cluster's apps/kustomization.yaml deploys live here (see RepoSnapshot._apps)


@dataclass(frozen=True)
class FileChange:
    """One changed path; a rename also names the path it had before."""

    path: str
    previous: str = ""

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.path, self.previous) if self.previous and self.previous != self.path else (self.path,)


@dataclass(frozen=True)
class AffectedCluster:
    name: str
    reasons: tuple[str, ...]  # "clusters/test/ changed", "runs app podinfo", "tracks branch main"
    ships_later: bool = False  # only infrastructure/ changed and the cluster is pinned: nothing to render now

    def describe(self) -> str:
        return "; ".join(self.reasons)


def watched(layout: Layout) -> tuple[str, ...]:
    """The directories whose changes reach clusters: `layout.clusters`, `layout.infrastructure`, apps."""
    return (layout.clusters.strip("/"), layout.infrastructure.strip("/"), APPS_DIR)


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory + "/")


def touches_fleet(changes: Iterable[FileChange], layout: Layout | None = None) -> bool:
    """Whether any changed path is under `clusters/`, `infrastructure/` or `apps/` (as laid out)."""
    dirs = watched(layout or Layout())
    return any(_under(path, d) for change in changes for path in change.paths for d in dirs)


def affected_clusters(changes: Iterable[FileChange], base: RepoSnapshot, head: RepoSnapshot) -> list[AffectedCluster]:
    """The clusters the change reaches, sorted by name; `ships_later` ones need no render now."""
    paths = sorted({path for change in changes for path in change.paths})
    reasons: dict[str, list[str]] = {}
    later: dict[str, str] = {}

    def hit(cluster: str, reason: str) -> None:
        found = reasons.setdefault(cluster, [])
        if reason not in found:
            found.append(reason)

    for snapshot in (base, head):
        clusters_dir, infrastructure_dir, apps_dir = watched(snapshot.layout)
        for path in paths:
            if _under(path, clusters_dir) and len(rest := path[len(clusters_dir) + 1:].split("/")) >= 2:
                hit(rest[0], f"{clusters_dir}/{rest[0]}/ changed")
            elif _under(path, apps_dir) and len(rest := path[len(apps_dir) + 1:].split("/")) >= 2:
                for cluster in snapshot.clusters:
                    if any(app.name == rest[0] for app in cluster.apps):
                        hit(cluster.name, f"runs app {rest[0]}")
            elif _under(path, infrastructure_dir):
                for cluster in snapshot.clusters:
                    if cluster.pin is None:
                        continue
                    if cluster.pin.kind == "branch":
                        hit(cluster.name, f"tracks branch {cluster.pin.value}")
                    else:
                        later.setdefault(cluster.name, f"pinned to {cluster.pin.kind} {cluster.pin.value}")
    infrastructure_dir = watched(head.layout)[1]
    found = [AffectedCluster(name, tuple(why)) for name, why in reasons.items()]
    found += [AffectedCluster(name, (f"{why}: the {infrastructure_dir}/ change ships with the next release",), True)
              for name, why in later.items() if name not in reasons]
    return sorted(found, key=lambda a: a.name)
