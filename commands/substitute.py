"""Flux's post-build variable substitution (`${var}`, `${var:=default}`, `${var:-default}`)."""
from __future__ import annotations

import posixpath
import re
from typing import Iterable, Mapping

from commands.model import Version
from commands.repo import RepoSnapshot, documents

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[=-])([^}]*))?\}")


def substitute(text: str, variables: Mapping[str, object]) -> tuple[str, list[str]]:
    """`text` with variables replaced, and the names used without a value or a default."""
    undefined: list[str] = []

    def value(match: re.Match[str]) -> str:
        name, operator, default = match.group(1), match.group(2), match.group(3)
        if name in variables:
            return str(variables[name])
        if operator:
            return default or ""
        undefined.append(name)
        return match.group(0)

    return _VARIABLE.sub(value, text), sorted(set(undefined))


def required_variables(texts: Iterable[str]) -> set[str]:
    """Variables used without a default: a cluster must set every one of them."""
    return {m.group(1) for text in texts for m in _VARIABLE.finditer(text) if not m.group(2)}


def infrastructure_texts(repo: RepoSnapshot, version: Version) -> list[str]:
    """The files Flux builds for `./infrastructure/` at a version, before substitution.

    Follows kustomization.yaml resources and patch paths the way `kustomize build` does, but not
    into child Flux Kustomizations: those get their variables from the first level's patches.
    """
    texts: list[str] = []
    seen: set[str] = set()

    def visit(directory: str) -> None:
        path = f"{directory}/kustomization.yaml"
        raw = repo.reader.read(version.commit, path)
        if raw is None or path in seen:
            return
        seen.add(path)
        texts.append(raw.decode("utf-8", "replace"))
        try:
            data = documents(raw)[0] or {}
        except (ValueError, IndexError):
            return
        entries = list(data.get("resources") or []) + [p.get("path") for p in data.get("patches") or [] if isinstance(p, dict)]
        for entry in entries:
            if not isinstance(entry, str) or "://" in entry:
                continue
            target = posixpath.normpath(posixpath.join(directory, entry))
            if target.endswith((".yaml", ".yml")):
                content = repo.reader.read(version.commit, target)
                if content is not None:
                    texts.append(content.decode("utf-8", "replace"))
            else:
                visit(target)

    visit(repo.layout.infrastructure.strip("/"))
    return texts
