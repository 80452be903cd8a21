"""An in-memory TreeReader: a list of whole trees (oldest first) and tags naming their index."""
from __future__ import annotations

from typing import Iterator


class MemoryReader:
    def __init__(self, commits: list[dict[str, str | bytes]], tags: dict[str, int] | None = None) -> None:
        self.commits = [{p: c.encode() if isinstance(c, str) else c for p, c in tree.items()} for tree in commits]
        self._tags = {name: str(index) for name, index in (tags or {}).items()}
        self.head = str(len(self.commits) - 1)

    def list_files(self, ref: str, prefix: str) -> list[str]:
        return sorted(p for p in self.commits[int(ref)] if p.startswith(prefix))

    def read(self, ref: str, path: str) -> bytes | None:
        return self.commits[int(ref)].get(path)

    def tags(self) -> dict[str, str]:
        return dict(self._tags)

    def history(self, ref: str, path: str) -> Iterator[tuple[str, bytes | None]]:
        for index in range(int(ref), -1, -1):
            content = self.commits[index].get(path)
            previous = self.commits[index - 1].get(path) if index else None
            if content != previous:
                yield str(index), content

    def changed_files(self, old: str, new: str, prefix: str) -> list[str]:
        a, b = self.commits[int(old)], self.commits[int(new)]
        return sorted(p for p in a.keys() | b.keys() if p.startswith(prefix) and a.get(p) != b.get(p))
