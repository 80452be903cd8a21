"""Reading a CHANGELOG.md in the Keep a Changelog format."""
from __future__ import annotations

import re

from commands.model import ChangelogSection

_VERSION_HEADING = re.compile(r"^##\s+\[?(?P<version>[^\]\s]+)\]?(?:\s*-\s*(?P<date>\S+))?\s*$")
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
            date, category, entries = heading["date"] or "", "", []
        elif version and (cat := _CATEGORY_HEADING.match(line)):
            category = cat["category"]
        elif version and (entry := _ENTRY.match(line)):
            entries.append((category, entry["text"]))
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
