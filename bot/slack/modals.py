"""The promote / rollback modal: clusters and versions to pick, a reason to type; no markup to decode.

Opened by `/flux promote` or `/flux rollback` without arguments, or by the global shortcuts
`fluxbot_promote` / `fluxbot_rollback` (then it also asks where to answer), with views.open and the
trigger_id (https://docs.slack.dev/surfaces/modals). Its submission (`view_submission`) becomes the
same command text a user could have typed, run as that user in the channel it was opened from.
"""
from __future__ import annotations

import json
from typing import Any

from commands.model import Cluster

CALLBACK_ID = "fluxbot_change"
_OPTIONS = 100  # https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element : at most 100 options
_TITLE = 24  # https://docs.slack.dev/surfaces/modals : a modal's title is at most 24 characters


def change_modal(verb: str, clusters: list[Cluster], versions: list[str], channel: str) -> dict[str, Any]:
    """A modal to `promote` (cluster and version) or `rollback` (cluster, optional version and reason)."""
    pinned = [c.name for c in clusters if c.pin is not None and c.pin.kind == "tag"][:_OPTIONS]
    blocks: list[dict[str, Any]] = [
        _select("cluster", "Cluster", pinned),
        _select("version", "Version" if verb == "promote" else "Version (default: the one before)",
                versions[:_OPTIONS], optional=verb == "rollback"),
    ]
    if not channel:  # opened from a global shortcut: no conversation to answer in yet
        blocks.append({"type": "input", "block_id": "channel", "label": {"type": "plain_text", "text": "Answer in"},
                       "element": {"type": "conversations_select", "action_id": "value",
                                   "filter": {"include": ["public", "private"], "exclude_bot_users": True}}})
    if verb == "rollback":
        blocks.append({"type": "input", "block_id": "reason", "optional": True,
                       "label": {"type": "plain_text", "text": "Reason"},
                       "element": {"type": "plain_text_input", "action_id": "value", "max_length": 200}})
    return {
        "type": "modal", "callback_id": CALLBACK_ID,
        "title": {"type": "plain_text", "text": f"{verb.capitalize()} a cluster"[:_TITLE]},
        "submit": {"type": "plain_text", "text": verb.capitalize()},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": json.dumps({"verb": verb, "channel": channel}),
        "blocks": blocks,
    }


def submitted_text(view: dict[str, Any]) -> tuple[str, str]:
    """(the command text, the channel) of a submitted change modal."""
    meta = json.loads(view.get("private_metadata") or "{}")
    values = (view.get("state") or {}).get("values") or {}

    def picked(block: str) -> str:
        element = (values.get(block) or {}).get("value") or {}
        option = element.get("selected_option") or {}
        return str(option.get("value") or element.get("value") or element.get("selected_conversation") or "").strip()

    cluster, version, reason = picked("cluster"), picked("version"), " ".join(picked("reason").split())
    channel = str(meta.get("channel") or picked("channel"))
    if meta.get("verb") == "promote":
        return f"promote {version} to {cluster}", channel
    text = f"rollback {cluster}" + (f" to {version}" if version else "") + (f" because {reason}" if reason else "")
    return text, channel


def _select(block_id: str, label: str, choices: list[str], optional: bool = False) -> dict[str, Any]:
    return {
        "type": "input", "block_id": block_id, "optional": optional,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": "static_select", "action_id": "value",
                    "placeholder": {"type": "plain_text", "text": f"Pick a {block_id}"},
                    "options": [{"text": {"type": "plain_text", "text": choice[:75]}, "value": choice}
                                for choice in choices] or [{"text": {"type": "plain_text", "text": "(none)"},
                                                            "value": "-"}]},
    }
