"""`fluxbot example-repo DIR`: a small Flux mono-repo with history, for trying fluxbot offline.

Layout as in the flux-demo repo: `clusters/{test,demo,prod-eu}`, `infrastructure/` released as
tags v0.1.0..v0.4.0 with a Keep a Changelog file, and one app. `test` tracks `main`, `prod-eu` is
productive and runs v0.3.0 (it ran v0.2.0 before), `demo` runs v0.4.0.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from commands.onboard import apps_base_yaml, infrastructure_yaml

REPO_URL = "https://git.example.com/platform/fleet.git"

_CHANGELOG_HEAD = """# Changelog

All notable changes to this project will be documented in this file.

The format is based on [Keep a Changelog](https://keepachangelog.com/en/1.1.0/),
and this project adheres to [Semantic Versioning](https://semver.org/spec/v2.0.0.html).

## [Unreleased]
"""

_RELEASES = {
    "0.1.0": ("2026-01-12", "### Added\n\n- Ingress controller ingress-nginx 4.10.0.\n"),
    "0.2.0": ("2026-03-02", "### Added\n\n- cert-manager 1.14.4 for certificates.\n"),
    "0.3.0": ("2026-05-18", "### Changed\n\n- ingress-nginx 4.10.0 -> 4.11.3.\n"),
    "0.4.0": ("2026-08-24", "### Added\n\n- external-secrets 0.10.4, reading from the zone's vault.\n"),
}
_UNRELEASED = "### Changed\n\n- cert-manager 1.14.4 -> 1.15.3.\n"


def _changelog(released: list[str], unreleased: str = "") -> str:
    body = _CHANGELOG_HEAD + ("\n" + unreleased if unreleased else "")
    for version in reversed(released):
        date, text = _RELEASES[version]
        body += f"\n## [{version}] - {date}\n\n{text}"
    links = [f"[unreleased]: {REPO_URL[:-4]}/compare/v{released[-1]}...HEAD"] if released else []
    for newer, older in zip(reversed(released), list(reversed(released))[1:] + [None]):
        links.append(f"[{newer}]: {REPO_URL[:-4]}/" + (f"compare/v{older}...v{newer}" if older else f"tree/v{newer}"))
    return body + "\n" + "\n".join(links) + "\n"


def _component(name: str, chart: str, version: str, repo_url: str, depends: str = "") -> dict[str, str]:
    depends_on = f"  dependsOn:\n    - name: {depends}\n" if depends else ""
    return {
        f"infrastructure/{name}/base.yaml": f"""apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
{depends_on}  interval: 5m
  retryInterval: 1m
  timeout: 5m
  sourceRef:
    kind: GitRepository
    name: infrastructure
  path: ./infrastructure/{name}
  prune: true
  wait: true
""",
        f"infrastructure/{name}/kustomization.yaml": """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ns.yaml
  - repo.yaml
  - release.yaml
""",
        f"infrastructure/{name}/ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n",
        f"infrastructure/{name}/repo.yaml": f"""apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: {name}
  namespace: {name}
spec:
  interval: 12h
  url: {repo_url}
""",
        f"infrastructure/{name}/release.yaml": f"""apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: {name}
  namespace: {name}
spec:
  interval: "${{infrastructure_release_interval}}"
  chart:
    spec:
      chart: {chart}
      version: "{version}"
      sourceRef:
        kind: HelmRepository
        name: {name}
        namespace: {name}
  values:
    commonLabels:
      example.com/cluster: "${{meta_cluster_name}}"
""",
    }


def _infrastructure_index(components: list[str]) -> str:
    resources = "".join(f"  - {c}/base.yaml\n" for c in components)
    return f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
{resources}patches:
  - patch: |-
      apiVersion: kustomize.toolkit.fluxcd.io/v1
      kind: Kustomization
      metadata:
        name: not-used
      spec:
        postBuild:
          substitute:
            meta_cluster_name: "${{meta_cluster_name}}"
            meta_network_zone: "${{meta_network_zone}}"
            infrastructure_release_interval: "${{infrastructure_release_interval:=30m}}"
    target:
      group: kustomize.toolkit.fluxcd.io
      kind: Kustomization
"""


def _cluster(name: str, ref: str, zone: str, productive: bool) -> dict[str, str]:
    variables = {"meta_cluster_name": name, "meta_network_zone": zone, "meta_productive": "true" if productive else "false"}
    return {
        f"clusters/{name}/infrastructure.yaml": f"# Infrastructure of {name}: the release it runs is the tag below.\n"
        + infrastructure_yaml(REPO_URL, ref, variables),
        f"clusters/{name}/apps-base.yaml": apps_base_yaml(name),
        f"clusters/{name}/apps/kustomization.yaml": """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: []
""",
    }


_PODINFO = {
    "apps/podinfo/kustomization.yaml": """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: podinfo
resources:
  - namespace.yaml
  - repository.yaml
  - release.yaml
""",
    "apps/podinfo/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: podinfo\n",
    "apps/podinfo/repository.yaml": """apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: podinfo
  namespace: podinfo
spec:
  interval: 1h
  url: https://stefanprodan.github.io/podinfo
""",
    "apps/podinfo/release.yaml": """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  interval: 30m
  chart:
    spec:
      chart: podinfo
      version: "6.7.0"
      sourceRef:
        kind: HelmRepository
        name: podinfo
  values:
    replicaCount: 1
""",
}

_README = """# fleet

Example Flux mono-repo made by `fluxbot example-repo`: clusters under `clusters/`, the
infrastructure under `infrastructure/` released as a whole by `vX.Y.Z` tags, apps under `apps/`.
"""


def write_example_repo(target: Path) -> Path:
    """Create the example repository (a git work tree on `main`) at `target`."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    git = _Git(target)
    git("init", "-q", "-b", "main")

    nginx = _component("ingress-nginx", "ingress-nginx", "4.10.0", "https://kubernetes.github.io/ingress-nginx")
    cert = _component("cert-manager", "cert-manager", "1.14.4", "https://charts.jetstack.io", "ingress-nginx")
    nginx_new = _component("ingress-nginx", "ingress-nginx", "4.11.3", "https://kubernetes.github.io/ingress-nginx")
    eso = _component("external-secrets", "external-secrets", "0.10.4", "https://charts.external-secrets.io", "cert-manager")
    eso[f"infrastructure/external-secrets/release.yaml"] = eso["infrastructure/external-secrets/release.yaml"].replace(
        "    commonLabels:", '    vaultZone: "${meta_network_zone}"\n    commonLabels:'
    )
    cert_new = _component("cert-manager", "cert-manager", "1.15.3", "https://charts.jetstack.io", "ingress-nginx")

    git.commit("feat(infrastructure): ingress-nginx", {
        "README.md": _README, **nginx, **_PODINFO,
        "infrastructure/kustomization.yaml": _infrastructure_index(["ingress-nginx"]),
        "CHANGELOG.md": _changelog(["0.1.0"]),
        **_cluster("test", "branch: main", "lab-1", False),
    })
    git.tag("v0.1.0")
    git.commit("chore(demo): onboard demo at v0.1.0", _cluster("demo", "tag: v0.1.0", "dmz-1", False))
    git.commit("chore(prod-eu): onboard prod-eu at v0.1.0", _cluster("prod-eu", "tag: v0.1.0", "eu-1", True))
    git.commit("feat(infrastructure): add cert-manager", {
        **cert, "infrastructure/kustomization.yaml": _infrastructure_index(["ingress-nginx", "cert-manager"]),
        "CHANGELOG.md": _changelog(["0.1.0", "0.2.0"]),
    })
    git.tag("v0.2.0")
    git.pin("demo", "v0.1.0", "v0.2.0")
    git.pin("prod-eu", "v0.1.0", "v0.2.0")
    git.commit("feat(infrastructure): ingress-nginx 4.11.3", {**nginx_new, "CHANGELOG.md": _changelog(["0.1.0", "0.2.0", "0.3.0"])})
    git.tag("v0.3.0")
    git.pin("demo", "v0.2.0", "v0.3.0")
    git.pin("prod-eu", "v0.2.0", "v0.3.0")
    git.commit("feat(infrastructure): add external-secrets", {
        **eso,
        "infrastructure/kustomization.yaml": _infrastructure_index(["ingress-nginx", "cert-manager", "external-secrets"]),
        "CHANGELOG.md": _changelog(["0.1.0", "0.2.0", "0.3.0", "0.4.0"]),
    })
    git.tag("v0.4.0")
    git.pin("demo", "v0.3.0", "v0.4.0")
    git.commit("feat(demo): deploy podinfo", {
        "clusters/demo/apps/kustomization.yaml": """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../apps/podinfo
patches:
  - path: ./values/podinfo.yaml
    target:
      kind: HelmRelease
      name: podinfo
""",
        "clusters/demo/apps/values/podinfo.yaml": """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: podinfo
spec:
  values:
    replicaCount: 2
""",
    })
    git.commit("feat(infrastructure): cert-manager 1.15.3", {
        **cert_new, "CHANGELOG.md": _changelog(["0.1.0", "0.2.0", "0.3.0", "0.4.0"], _UNRELEASED),
    })
    return target


class _Git:
    """Commits with fixed identities and dates, so the example repo is the same every time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tick = 0

    def __call__(self, *args: str) -> None:
        self.tick += 1
        date = f"@{1767225600 + self.tick * 86400} +0000"
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Platform Team", "GIT_AUTHOR_EMAIL": "platform@example.com",
            "GIT_COMMITTER_NAME": "Platform Team", "GIT_COMMITTER_EMAIL": "platform@example.com",
            "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date,
        }
        subprocess.run(["git", *args], cwd=self.root, env=env, check=True, capture_output=True)

    def commit(self, message: str, files: dict[str, str]) -> None:
        for path, text in files.items():
            file = self.root / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
        self("add", "-A")
        self("commit", "-q", "-m", message)

    def tag(self, name: str) -> None:
        self("tag", "-a", name, "-m", f"infrastructure {name}")

    def pin(self, cluster: str, old: str, new: str) -> None:
        path = self.root / "clusters" / cluster / "infrastructure.yaml"
        path.write_text(path.read_text().replace(f"tag: {old}", f"tag: {new}"))
        self.commit(f"chore({cluster}): promote infrastructure to {new}", {})
