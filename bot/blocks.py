"""Block Kit rendering of `Message`s, with the plain-text fallback Slack shows in notifications."""
from __future__ import annotations

from typing import Any

from bot.render import table_lines, to_text
from commands.model import Message

_EMOJI = {"info": ":information_source:", "success": ":white_check_mark:", "warning": ":warning:", "error": ":x:"}
_MAX_TEXT = 2900  # Slack caps a section's text at 3000 characters


def to_blocks(message: Message, actions: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Header, lines, fields, table, link buttons, extra actions and a context line."""
    blocks: list[dict[str, Any]] = [{
        "type": "header",
        "text": {"type": "plain_text", "text": f"{_EMOJI[message.tone]} {message.title}"[:150], "emoji": True},
    }]
    if message.lines:
        blocks.append(_section("\n".join(message.lines)))
    if message.fields:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{label}*\n{value}"[:2000]} for label, value in message.fields[:10]
        ]})
    if message.table:
        blocks.append(_section("```\n" + "\n".join(table_lines(message.table)) + "\n```"))
    buttons = [
        {"type": "button", "action_id": f"fluxbot_link_{i}", "text": {"type": "plain_text", "text": link.label},
         "url": link.url}
        for i, link in enumerate(message.links) if link.url.startswith(("https://", "http://"))
    ]
    others = [f"{link.label}: `{link.url}`" for link in message.links if not link.url.startswith(("https://", "http://"))]
    if others:
        blocks.append(_section("\n".join(others)))
    if buttons or actions:
        blocks.append({"type": "actions", "elements": (buttons + (actions or []))[:25]})
    if message.context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": message.context[:2000]}]})
    return blocks


def fallback(message: Message) -> str:
    """The `text` of a chat.postMessage: what notifications and screen readers get."""
    return to_text(message)[:3000]


def _section(text: str) -> dict[str, Any]:
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 20] + ("\n```" if text.startswith("```") else "") + "\n… (cut)"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def confirm_buttons(confirmation_id: str, summary: str) -> list[dict[str, Any]]:
    """'Open PR' (danger, with a confirm dialog) and 'Cancel' for a pending confirmation."""
    return [
        {
            "type": "button", "action_id": "fluxbot_confirm", "value": confirmation_id, "style": "danger",
            "text": {"type": "plain_text", "text": "Open PR"},
            "confirm": {
                "title": {"type": "plain_text", "text": "Open the PR?"},
                "text": {"type": "mrkdwn", "text": summary[:300]},
                "confirm": {"type": "plain_text", "text": "Open PR"},
                "deny": {"type": "plain_text", "text": "Back"},
                "style": "danger",
            },
        },
        {"type": "button", "action_id": "fluxbot_cancel", "value": confirmation_id,
         "text": {"type": "plain_text", "text": "Cancel"}},
    ]
