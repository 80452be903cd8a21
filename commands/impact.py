"""Which clusters a pull request changes, and whether that puts it behind the change gate.

Files under `clusters/<c>/` affect `c`; files under `apps/<a>/` affect every cluster whose apps
kustomization deploys `a`; files under `infrastructure/` affect only clusters that track a branch
(pinned clusters change when their pin moves, which is a file under `clusters/`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from commands.repo import RepoSnapshot


@dataclass(frozen=True)
class Impact:
    clusters: tuple[str, ...]
    productive: tuple[str, ...]

    @property
    def gated(self) -> bool:
        return bool(self.productive)

    def describe(self) -> str:
        if not self.clusters:
            return "changes no cluster"
        if not self.productive:
            return f"changes {', '.join(self.clusters)}; no productive cluster"
        return f"changes productive {', '.join(self.productive)}"


def impact(changed_files: Iterable[str], *snapshots: RepoSnapshot) -> Impact:
    """The clusters `changed_files` affect, judged on each snapshot given (base and head of a PR).

    A cluster counts as productive if it is productive in any of them, so a PR that switches
    `meta_productive` off is still gated.
    """
    affected: set[str] = set()
    productive: set[str] = set()
    files = list(changed_files)
    for snapshot in snapshots:
        names = set(snapshot.cluster_names)
        hits: set[str] = set()
        for path in files:
            parts = path.split("/")
            clusters = snapshot.layout.clusters.strip("/") + "/"
            if path.startswith(clusters):
                inside = path[len(clusters):].split("/")
                owner = next((n for n in names if path.startswith(snapshot.directory(n) + "/")), None)
                if owner or len(inside) > snapshot.layout.cluster_depth:
                    hits.add(owner or inside[snapshot.layout.cluster_depth - 1])
            elif parts[0] == "apps" and len(parts) >= 3:
                hits |= {c.name for c in snapshot.clusters if any(a.name == parts[1] for a in c.apps)}
            elif path.startswith(snapshot.layout.infrastructure.strip("/") + "/"):
                hits |= {c.name for c in snapshot.clusters if c.pin is not None and c.pin.kind == "branch"}
        affected |= hits
        productive |= {name for name in hits & names if snapshot.cluster(name).productive}
    return Impact(tuple(sorted(affected)), tuple(sorted(productive)))
