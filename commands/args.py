"""Turning words of a chat command into clusters and versions, with helpful refusals."""
from __future__ import annotations

import difflib
import re

from commands.model import Cluster, CommandError, Version
from commands.repo import SAFE_NAME, RepoSnapshot, parse_version

_MENTION = re.compile(r"^(?:<@[A-Z0-9]+>|@fluxbot)\s*", re.IGNORECASE)
_SLASH = re.compile(r"^/?flux\b\s*", re.IGNORECASE)


def split_words(text: str) -> list[str]:
    """Words of a command, without a leading `/flux`, `flux` or `@fluxbot` mention."""
    text = _MENTION.sub("", text.strip())
    text = _SLASH.sub("", text)
    return text.split()


_EXAMPLE = {"cluster": "prod-eu", "app": "podinfo", "version": "v1.2.3"}


def check_name(value: str, what: str) -> str:
    """Refuse names that could escape a path, reach a shell or make an invalid git branch name."""
    article = "an" if what[:1] in "aeiou" else "a"
    example = _EXAMPLE.get(what, "prod-eu")
    if not SAFE_NAME.match(value) or ".." in value:
        raise CommandError(
            f"`{value[:80]}` is not a valid {what} name",
            f"{article} {what} name has only letters, digits, `-`, `_` and `.`, like `{example}`",
        )
    if value.lower().endswith(".lock"):
        # git refuses a ref name component ending in `.lock` (git-check-ref-format(1)).
        raise CommandError(f"`{value}` is not a valid {what} name: git refuses branch names ending in `.lock`",
                           f"choose another name, like `{example}`")
    return value


def cluster_list(words: list[str]) -> list[str]:
    """`prod-eu, prod-us` or `prod-eu,prod-us` -> ['prod-eu', 'prod-us']."""
    names = [name for name in " ".join(words).replace(",", " ").split() if name]
    if not names:
        raise CommandError("no cluster given")
    return list(dict.fromkeys(names))


def resolve_cluster(repo: RepoSnapshot, name: str) -> Cluster:
    """The cluster called `name`, or a refusal that names the nearest ones."""
    check_name(name, "cluster")
    cluster = repo.cluster(name)
    if cluster is not None:
        return cluster
    known = repo.cluster_names
    near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {_quote_all(near)}? " if near else ""
    raise CommandError(
        f"there is no cluster `{name}` (no directory {repo.directory(name)}/)",
        hint + (f"known clusters: {_quote_all(known)}" if known else
                f"the repo has no {repo.layout.clusters}/ yet (`layout.clusters` says where clusters are)"),
    )


def resolve_version(repo: RepoSnapshot, text: str) -> Version:
    """The release tagged `text` (`v0.4.0` or `0.4.0`), or a refusal listing the newest ones."""
    newest = _quote_all([v.tag for v in reversed(repo.versions[-5:])]) or "none yet"
    if parse_version(text) is None:
        raise CommandError(
            f"`{text}` is not a semantic version",
            f"versions look like `v1.2.3`; the newest are {newest}",
        )
    version = repo.version(text)
    if version is None:
        raise CommandError(f"there is no release `{text}` (no such git tag)", f"the newest versions are {newest}")
    return version


def _quote_all(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
