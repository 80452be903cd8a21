"""How a fleet repo is laid out, as fluxbot.yaml's `layout:` describes it (defaults: flux-demo's).

Real fleet repos vary: infrastructure elsewhere, prefixed tags (`infra-v1.2.0`), clusters nested by
environment (`clusters/<env>/<cluster>`), semantic-release changelogs. What fluxbot does not
understand it names in one line, with the key that would help (`unsupported`).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

CHANGELOG_STYLES = ("keep-a-changelog", "semantic-release")


@dataclass(frozen=True)
class Layout:
    infrastructure: str = "infrastructure"  # `layout.infrastructure`: the released directory
    clusters: str = "clusters"  # `layout.clusters`: where cluster directories are
    cluster_depth: int = 1  # `layout.cluster_depth`: 2 for clusters/<env>/<cluster>/
    tag_prefix: str = ""  # `layout.tag_prefix`: `infra-` for infra-v1.2.0; `v` is always optional
    changelog: str = "CHANGELOG.md"  # `layout.changelog`
    changelog_style: str = "keep-a-changelog"  # `layout.changelog_style`: or `semantic-release`
    per_cluster_variables: tuple[str, ...] = ("meta_*",)  # `layout.per_cluster_variables`: never copied by `onboard ... like`

    def is_per_cluster(self, variable: str) -> bool:
        return any(fnmatch.fnmatchcase(variable, pattern) for pattern in self.per_cluster_variables)

    def tag_version(self, tag: str) -> str | None:
        """The version part of a release tag (`infra-v1.2.0` -> `v1.2.0`), or None for other tags."""
        if self.tag_prefix:
            return tag[len(self.tag_prefix):] if tag.startswith(self.tag_prefix) else None
        return tag

    def tag_for(self, version: str) -> str:
        """The tag name a new release gets (`v1.2.0` -> `infra-v1.2.0`)."""
        return self.tag_prefix + version
