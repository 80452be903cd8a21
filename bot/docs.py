"""The README's command reference, generated from the registry (a test keeps them in sync).

Regenerate with `python -m bot.docs`.
"""
from __future__ import annotations

from commands.registry import COMMANDS


def command_reference() -> str:
    """A Markdown table of every registered command."""
    rows = ["| command | what it does | example |", "| --- | --- | --- |"]
    for spec in COMMANDS.values():
        needs = f" Needs permission `{spec.action}`." if spec.action else ""
        usage = spec.usage.replace("|", "\\|")
        rows.append(f"| `{usage}` | {spec.summary}{needs} | `{spec.examples[0]}` |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(command_reference(), end="")
