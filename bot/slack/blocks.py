"""Block Kit rendering of `Message`s: within Slack's limits, paged when longer, never an empty text.

A message too long for one Slack message (50 blocks of at most 3,000 characters each) becomes
several pages, posted one after the other into the same thread; every page but the last says how
much follows. Every string goes through `markup.to_mrkdwn` (escaped, nobody pinged).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.render import layout, table_lines
from bot.slack import limits
from bot.slack.markup import IdNames, Names, escape, has_channel_ref, to_mrkdwn, to_plain
from commands.model import Message

_EMOJI = {"info": ":information_source:", "success": ":white_check_mark:", "warning": ":warning:", "error": ":x:"}
_FENCE = "```"
Block = dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One chat.postMessage worth of a message: its blocks and its notification text."""

    blocks: list[Block]
    text: str


@dataclass(frozen=True)
class _Part:
    block: Block
    units: int = 0  # how many lines, rows or fields of the message it shows
    unit: str = "lines"


def to_pages(message: Message, actions: list[Block] | None = None, names: Names | None = None,
             notify: frozenset[str] = frozenset()) -> list[Page]:
    """The message as one or more Slack messages; buttons and the context line go on the last."""
    names = names or IdNames()
    header, title_parts = _title(message, names, notify)
    body = title_parts + _body(message, names, notify)
    tail = _tail(message, actions, names, notify)
    if 1 + len(body) + len(tail) <= limits.MAX_BLOCKS_PER_MESSAGE:
        return [Page([header, *(part.block for part in body), *tail], fallback(message, names))]
    chunks: list[list[_Part]] = []
    rest = body
    last_capacity = limits.MAX_BLOCKS_PER_MESSAGE - 1 - len(tail)
    while len(rest) > last_capacity:
        size = limits.MAX_BLOCKS_PER_MESSAGE - 2  # a header, and the note saying what follows
        chunks.append(rest[:size])
        rest = rest[size:]
    chunks.append(rest)
    pages = []
    plain_title = _plain_title(message, names)
    for index, chunk in enumerate(chunks, start=1):
        later = [part for other in chunks[index:] for part in other]
        blocks = [header if index == 1 else _header(f"{plain_title} (part {index} of {len(chunks)})")]
        blocks += [part.block for part in chunk]
        if later:
            blocks.append(_context(f"part {index} of {len(chunks)}; continued in the next message: {_left(later)}"))
            text = f"{_EMOJI[message.tone]} {plain_title} (part {index} of {len(chunks)})"
        else:
            blocks += tail
            text = f"{_EMOJI[message.tone]} {plain_title} (part {index} of {len(chunks)}, the last)"
        pages.append(Page(blocks, escape(text) if index > 1 else fallback(message, names)))
    return pages


def to_blocks(message: Message, actions: list[Block] | None = None, names: Names | None = None,
              notify: frozenset[str] = frozenset()) -> list[Block]:
    """The blocks of a message that fits one Slack message (updates, notices); its first page otherwise."""
    return to_pages(message, actions, names, notify)[0].blocks


def fallback(message: Message, names: Names | None = None) -> str:
    """The `text` of a chat.postMessage (notifications, screen readers): the shell's layout, escaped,
    people by name, nobody pinged."""
    text = to_mrkdwn(layout(message), names)
    if len(text) > limits.FALLBACK_TEXT:
        text = text[: limits.FALLBACK_TEXT - 40].rsplit("\n", 1)[0] + "\n  … (the rest is in the message)"
    return text


# pieces --------------------------------------------------------------------------------------

def _plain_title(message: Message, names: Names) -> str:
    return " ".join(to_plain(message.title, names).replace("`", "").split()) or message.tone


def _title(message: Message, names: Names, notify: frozenset[str]) -> tuple[Block, list[_Part]]:
    """A plain_text header; a title with channel links, code or angle brackets is also shown, formatted, below.

    Headers are plain_text (https://docs.slack.dev/reference/block-kit/blocks/header-block): a
    mention, a channel link or backticks there would show raw.
    """
    plain = _plain_title(message, names)
    header = _header(f"{_EMOJI[message.tone]} " + "".join(c for c in plain if c not in "<>"))
    formatted = (has_channel_ref(message.title) or "`" in message.title or any(c in plain for c in "<>")
                 or header["text"]["text"].endswith("…"))
    return header, [_Part(_section(to_mrkdwn(message.title, names, notify)))] if formatted else []


def _header(text: str) -> Block:
    text = " ".join(text.split())
    if len(text) > limits.MAX_HEADER_TEXT:
        text = text[: limits.MAX_HEADER_TEXT - 1] + "…"
    return {"type": "header", "text": {"type": "plain_text", "text": text or "fluxbot", "emoji": True}}


def _body(message: Message, names: Names, notify: frozenset[str]) -> list[_Part]:
    parts = _chunks([to_mrkdwn(line, names, notify) for line in message.lines if line.strip()], "lines")
    for start in range(0, len(message.fields), limits.MAX_SECTION_FIELDS):
        group = message.fields[start:start + limits.MAX_SECTION_FIELDS]
        parts.append(_Part({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{to_mrkdwn(label, names, notify)}*\n{to_mrkdwn(value, names, notify) or '-'}",
                                            limits.MAX_FIELD_TEXT)}
            for label, value in group
        ]}, len(group), "fields"))
    if message.table:
        lines = table_lines(_plain_table(message, names))
        head, rows = escape(lines[0]), [escape(row) for row in lines[1:]]
        parts += _chunks(rows, "rows", prefix=f"{_FENCE}\n{head}\n", suffix=f"\n{_FENCE}")
    others = [f"{link.label}: `{link.url}`" for link in message.links if not _web(link.url)]
    parts += _chunks([to_mrkdwn(line, names, notify) for line in others], "links")
    return parts


def _tail(message: Message, actions: list[Block] | None, names: Names, notify: frozenset[str]) -> list[Block]:
    buttons = [
        {"type": "button", "action_id": f"fluxbot_link_{i}", "url": link.url,
         "text": {"type": "plain_text", "text": _cut(link.label or link.url, limits.MAX_BUTTON_TEXT)}}
        for i, link in enumerate(message.links) if _web(link.url)
    ]
    tail: list[Block] = []
    if buttons or actions:
        tail.append({"type": "actions", "elements": (buttons + (actions or []))[: limits.MAX_ACTION_ELEMENTS]})
    if message.context.strip():
        tail.append(_context(to_mrkdwn(message.context, names, notify)))
    return tail


def _chunks(lines: list[str], unit: str, prefix: str = "", suffix: str = "") -> list[_Part]:
    """Lines packed into sections of at most 3,000 characters, each within the fences given."""
    room = limits.MAX_SECTION_TEXT - len(prefix) - len(suffix)
    parts: list[_Part] = []
    current: list[str] = []
    size = 0
    for line in lines:
        line = _cut(line, room)
        if current and size + 1 + len(line) > room:
            parts.append(_Part(_section(prefix + "\n".join(current) + suffix), len(current), unit))
            current, size = [], 0
        current.append(line)
        size += len(line) + (1 if size else 0)
    if current:
        parts.append(_Part(_section(prefix + "\n".join(current) + suffix), len(current), unit))
    return parts


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(text, limits.MAX_TEXT_OBJECT)}]}


def _left(parts: list[_Part]) -> str:
    totals: dict[str, int] = {}
    for part in parts:
        if part.units:
            totals[part.unit] = totals.get(part.unit, 0) + part.units
    return ", ".join(f"{count:,} more {unit}" for unit, count in totals.items()) or "more"


def _plain_table(message: Message, names: Names) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(to_plain(cell, names) for cell in row) for row in message.table)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _web(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def confirm_buttons(confirmation_id: str, summary: str) -> list[Block]:
    """'Open PR' (danger, with a confirm dialog) and 'Cancel' for a pending confirmation."""
    return [
        {
            "type": "button", "action_id": "fluxbot_confirm", "value": confirmation_id, "style": "danger",
            "text": {"type": "plain_text", "text": "Open PR"},
            "confirm": {
                "title": {"type": "plain_text", "text": "Open the PR?"},
                "text": {"type": "mrkdwn", "text": _summary(summary)},
                "confirm": {"type": "plain_text", "text": "Open PR"},
                "deny": {"type": "plain_text", "text": "Back"},
                "style": "danger",
            },
        },
        {"type": "button", "action_id": "fluxbot_cancel", "value": confirmation_id,
         "text": {"type": "plain_text", "text": "Cancel"}},
    ]


def _summary(summary: str) -> str:
    """The confirm dialog's text (at most 300 characters): as many lines as fit, then how many more."""
    lines = [to_mrkdwn(line) for line in summary.splitlines() if line.strip()] or ["Open the PR?"]
    shown: list[str] = []
    for index, line in enumerate(lines):
        rest = len(lines) - index - 1
        note = f"\n… and {rest} more, listed in the message" if rest else ""
        if len("\n".join(shown + [line])) + len(note) > limits.MAX_CONFIRM_TEXT:
            more = len(lines) - len(shown)
            return "\n".join(shown) + f"\n… and {more} more, listed in the message"
        shown.append(line)
    return "\n".join(shown)
