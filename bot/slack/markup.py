"""Slack markup, both ways: `decode` what Slack sends into plain text, `to_mrkdwn` what leaves.

In: Slack encodes `&`, `<`, `>` as entities and wraps users, channels, groups, specials and
(auto-linked) URLs in `<…>` (https://docs.slack.dev/messaging/formatting-message-text#retrieving-messages).
Every way text arrives (slash command, mention) goes through `decode` once, before parsing; the
shell's text is plain already.

Out: a `Message`'s strings are plain text with three trusted references that fluxbot writes
itself: `<@U…>` (a user), `<#C…>` (a channel), `<!subteam^S…>` (a user group). `to_mrkdwn`
escapes everything else (https://docs.slack.dev/messaging/formatting-message-text#escaping), so
untrusted text (command text, PR titles, Flux errors, reasons) can never ping or link, and shows
users and groups by name, not as mentions: nobody is notified unless a group is named in `notify`.
"""
from __future__ import annotations

import re
from typing import Protocol

_TOKEN = re.compile(r"<([^<>]*)>")
# The references fluxbot itself writes into messages (IDs: upper-case letters, digits; tests use `_`).
_REF = re.compile(r"<(@[UWB][A-Z0-9_]+|#[CGD][A-Z0-9_]+|!subteam\^[A-Z0-9_]+)>")
_SPECIALS = {"here", "channel", "everyone"}


class Names(Protocol):
    """Readable names for Slack IDs (users:read, usergroups:read); the ID when unknown."""

    def user(self, user_id: str) -> str: ...

    def group(self, group_id: str) -> str: ...


class IdNames:
    """No directory: IDs stand for themselves."""

    def user(self, user_id: str) -> str:
        return user_id

    def group(self, group_id: str) -> str:
        return group_id


def escape(text: str) -> str:
    """`&`, `<`, `>` as the entities Slack reads as literal characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def decode(text: str, names: Names | None = None) -> str:
    """Slack's encoded text as the plain text the user typed (links to their text, mentions to names)."""
    names = names or IdNames()
    out, pos = [], 0
    for match in _TOKEN.finditer(text):
        out.append(unescape(text[pos:match.start()]))
        out.append(_decode_token(match.group(1), names))
        pos = match.end()
    out.append(unescape(text[pos:]))
    return "".join(out)


def _decode_token(token: str, names: Names) -> str:
    target, _, label = token.partition("|")
    label = unescape(label)
    if target.startswith("@"):  # <@U123> or <@U123|alice>
        return "@" + (label or names.user(target[1:]))
    if target.startswith("#"):  # <#C123|ops>
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):  # <!subteam^S123|@sre>
        return label if label.startswith("@") else "@" + (label or names.group(target.removeprefix("!subteam^")))
    if target.startswith("!"):  # <!here>, <!channel>, <!date^…|fallback>
        word = target[1:].split("^")[0]
        return label or ("@" + word if word in _SPECIALS else word)
    # a link: auto-linked (`<http://x.example|x.example>`, the label is what was typed) or pasted
    return label or unescape(target).removeprefix("mailto:")


def command_text(text: str, bot_user_id: str) -> str:
    """The command in a mention, wherever the bot is mentioned: `hey <@UBOT> status` -> `status`."""
    mention = re.search(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", text) if bot_user_id else None
    mention = mention or re.search(r"^\s*<@[A-Z0-9_]+(?:\|[^>]*)?>", text)
    if mention is None:
        return text
    after = text[mention.end():].lstrip(" ,:")
    return after if after.strip() else text[:mention.start()]


def to_mrkdwn(text: str, names: Names | None = None, notify: frozenset[str] = frozenset()) -> str:
    """A message string as mrkdwn: references by name (groups in `notify` as real mentions), the rest escaped."""
    names = names or IdNames()
    out, pos = [], 0
    for match in _REF.finditer(text):
        out.append(escape(text[pos:match.start()]))
        ref = match.group(1)
        if ref.startswith("#"):
            out.append(match.group(0))  # a channel link notifies nobody
        elif ref.startswith("!subteam^") and ref.removeprefix("!subteam^") in notify:
            out.append(match.group(0))
        else:
            out.append(escape(_ref_name(ref, names)))
        pos = match.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def to_plain(text: str, names: Names | None = None) -> str:
    """A message string as plain text (the shell, plain_text headers): references by name."""
    names = names or IdNames()
    return _REF.sub(lambda m: _ref_name(m.group(1), names), text)


def has_channel_ref(text: str) -> bool:
    return any(m.group(1).startswith("#") for m in _REF.finditer(text))


def _ref_name(ref: str, names: Names) -> str:
    if ref.startswith("@"):
        return "@" + names.user(ref[1:])
    if ref.startswith("#"):
        return "#" + ref[1:]
    group = names.group(ref.removeprefix("!subteam^"))
    return group if group.startswith("@") else "@" + group
