"""A small in-memory mono-repo with history, for planning commands without git."""
from __future__ import annotations

import pytest

from commands.context import Context
from commands.model import PullRequest
from commands.repo import RepoSnapshot
from tests.commands.memory import MemoryReader

CHANGELOG = """# Changelog

## [Unreleased]

### Added

- something new

## [0.10.0] - 2026-05-01

### Changed

- nginx 4.11 with a long entry that
  wraps onto a second line

## [0.9.0] - 2026-04-01

### Added

- cert-manager
- external-secrets

## [0.2.0] - 2026-02-01

### Fixed

- a fix
"""


def cluster_file(name: str, ref: str, productive: str | None = '"false"') -> str:
    flag = f"      meta_productive: {productive}\n" if productive is not None else ""
    return f"""apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: infrastructure
  namespace: flux-system
spec:
  sourceRef:
    kind: GitRepository
    name: infra-source
  path: ./infrastructure/
  postBuild:
    substitute:
      meta_cluster_name: {name}
{flag}---
# the back-reference comes second here, and the file is not called infrastructure.yaml
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: infra-source
  namespace: flux-system
spec:
  ref:
    {ref}
  url: https://example.com/fleet.git
"""


def release(chart: str, version: str) -> str:
    return f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: {chart}
  namespace: {chart}
spec:
  chart:
    spec:
      chart: {chart}
      version: "{version}"
"""


def build_reader() -> MemoryReader:
    """History: v0.2.0 -> v0.9.0 -> v0.10.0 released; prod pinned 0.2.0 -> 0.9.0 -> 0.10.0 -> 0.9.0."""
    base = {
        "CHANGELOG.md": CHANGELOG,
        "infrastructure/nginx/release.yaml": release("ingress-nginx", "4.10.0"),
        "clusters/lab/sync.yaml": cluster_file("lab", "branch: main"),
        "clusters/prod/flux.yml": cluster_file("prod", "tag: v0.2.0", '"true"'),
        "clusters/prod/apps/kustomization.yaml": (
            "resources:\n  - ../../../apps/podinfo\n  - ../../../apps/redis/\n"
            "patches:\n  - path: ./values/podinfo.yaml\n    target:\n      kind: HelmRelease\n      name: podinfo\n"
        ),
        "clusters/stage/infra.yaml": cluster_file("stage", "tag: v0.9.0", "true"),
        "clusters/semver/infra.yaml": cluster_file("semver", "semver: '>=0.9.0'"),
        "clusters/broken/infra.yaml": "spec:\n  path: ./infrastructure/\n  ref: [unclosed\n",
        "clusters/nosource/infra.yaml": cluster_file("nosource", "tag: v0.9.0").split("---")[0],
    }
    v09 = {**base, "infrastructure/cert-manager/release.yaml": release("cert-manager", "1.14.0")}
    prod_on_09 = {**v09, "clusters/prod/flux.yml": cluster_file("prod", "tag: v0.9.0", '"true"')}
    v10 = {**prod_on_09, "infrastructure/nginx/release.yaml": release("ingress-nginx", "4.11.3")}
    commits = [
        base,
        v09,
        prod_on_09,
        v10,
        {**v10, "clusters/prod/flux.yml": cluster_file("prod", "tag: v0.10.0", '"true"')},
        {**v10, "clusters/prod/flux.yml": cluster_file("prod", "tag: v0.9.0", '"true"')},
    ]
    return MemoryReader(commits, {"v0.2.0": 0, "v0.9.0": 1, "v0.10.0": 3, "latest": 3})


@pytest.fixture
def repo() -> RepoSnapshot:
    return RepoSnapshot(build_reader())


@pytest.fixture
def ctx(repo: RepoSnapshot) -> Context:
    return Context(repo, "alice")


def open_pr(cluster: str, number: int = 7, branch: str = "fluxbot/x") -> PullRequest:
    return PullRequest(number, f"Promote {cluster}", f"https://forge/pull/{number}", branch, cluster, "promotion")
