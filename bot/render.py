"""Plain-text rendering of `Message`s for the shell (Slack gets Block Kit from the same objects)."""
from __future__ import annotations

import re

from commands.model import Message

# The references a Message may hold (`<@U…>`, `<#C…>`, `<!subteam^S…>`): the terminal shows them as @/# IDs.
_REF = re.compile(r"<([@#])([A-Z0-9_]+)>|<!subteam\^([A-Z0-9_]+)>")

_MARK = {"info": "•", "success": "✓", "warning": "!", "error": "✗"}


def to_text(message: Message) -> str:
    """A message as terminal text: title, lines, fields, an aligned table, links, context."""
    return _REF.sub(lambda m: f"{m.group(1)}{m.group(2)}" if m.group(1) else f"@{m.group(3)}", layout(message))


def layout(message: Message) -> str:
    """The terminal layout with references (`<@U…>`) left in, for renderers that resolve them."""
    out = [f"{_MARK[message.tone]} {message.title}"]
    out += [f"  {line}" for line in message.lines]
    if message.fields:
        width = max(len(label) for label, _ in message.fields)
        out += [f"  {label + ':':<{width + 1}} {value}" for label, value in message.fields]
    if message.table:
        out += [f"  {row}" for row in table_lines(message.table)]
    out += [f"  -> {link.label}: {link.url}" for link in message.links]
    if message.context:
        out.append(f"  ({message.context})")
    return "\n".join(out)


def table_lines(rows: tuple[tuple[str, ...], ...]) -> list[str]:
    """Rows as aligned columns (first row the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
