"""Reading a changelog: Keep a Changelog (`## [0.4.0] - 2026-05-01`) or semantic-release style
(`## [1.24.1](https://…/compare/v1.24.0...v1.24.1) (2026-08-22)`, `# [1.25.0](…) (…)` for minors)."""
from __future__ import annotations

import re

from commands.model import ChangelogSection

_VERSION_HEADING = re.compile(
    r"^#{1,3}\s+\[?(?P<version>unreleased|v?\d+\.\d+\.\d+[^\]\s()]*)\]?(?P<link>\([^)]*\))?"
    r"(?:\s*-\s*(?P<date>\S+)|\s*\((?P<paren_date>\d{4}-\d{2}-\d{2})\))?\s*$", re.I)
_COMMIT_LINK = re.compile(r"\s*\(\[[0-9a-f]{7,40}\]\([^)]*\)\)")  # semantic-release: ([abc1234](url))
_CATEGORY_HEADING = re.compile(r"^###\s+(?P<category>.+?)\s*$")
_ENTRY = re.compile(r"^\s*[-*]\s+(?P<text>.+?)\s*$")


def parse_changelog(text: str) -> dict[str, ChangelogSection]:
    """Sections by version without a leading `v` (`"0.4.0"`, `"unreleased"`), in file order."""
    sections: dict[str, ChangelogSection] = {}
    version = date = category = ""
    entries: list[tuple[str, str]] = []

    def close() -> None:
        if version:
            sections[version] = ChangelogSection(version, date, tuple(entries))

    for line in text.splitlines():
        if heading := _VERSION_HEADING.match(line):
            close()
            version = normalise(heading["version"])
            date, category, entries = heading["date"] or heading["paren_date"] or "", "", []
        elif version and (cat := _CATEGORY_HEADING.match(line)):
            category = cat["category"]
        elif version and (entry := _ENTRY.match(line)):
            entries.append((category, _COMMIT_LINK.sub("", entry["text"])))
        elif version and entries and line.startswith((" ", "\t")) and line.strip():
            # A wrapped entry continues on an indented line.
            cat, previous = entries[-1]
            entries[-1] = (cat, f"{previous} {line.strip()}")
    close()
    return sections


def normalise(version: str) -> str:
    """`v0.4.0` and `0.4.0` name the same section; `Unreleased` in any case is one key."""
    version = version.strip()
    if version.lower() == "unreleased":
        return "unreleased"
    return version[1:] if version[:1] in "vV" else version


def looks_semantic_release(text: str) -> bool:
    """Version headings with a compare link, as semantic-release writes them."""
    return any((m := _VERSION_HEADING.match(line)) and m["link"] for line in text.splitlines())
