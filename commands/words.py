"""Counting in words: `1 release`, `2 releases`."""
from __future__ import annotations


def count(n: int, singular: str, plural: str = "") -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
