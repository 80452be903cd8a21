"""Bounds on what a chat request may carry into replies, commits and PR bodies.

GitHub refuses a pull request body over 65,536 characters (the REST API answers 422 "body is too
long (maximum is 65536 characters)"); Slack takes slash-command text up to a few thousand. A
request beyond these bounds is refused briefly, without echoing it back.
"""
from __future__ import annotations

from commands.model import CommandError

MAX_COMMAND_CHARS = 4000  # a chat command; Slack's own input box stops well before 40,000
MAX_REASON_CHARS = 300  # a `because` reason: one line in a commit message and a PR body
MAX_BODY_CHARS = 60_000  # below GitHub's 65,536-character cap on PR bodies, with room for reports
MAX_COMMIT_CHARS = 20_000


def check_command_length(text: str) -> None:
    """Refuse an oversized command without repeating it."""
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError(
            f"that command is {len(text):,} characters long; fluxbot takes at most {MAX_COMMAND_CHARS:,}",
            "shorten it (a `because` reason takes one short line); nothing was done",
        )


def one_line_reason(text: str) -> str:
    """A reason as one line (a newline could forge a commit trailer), refused beyond the bound."""
    reason = " ".join(text.split())
    if len(reason) > MAX_REASON_CHARS:
        raise CommandError(
            f"the reason is {len(reason):,} characters long; fluxbot takes at most {MAX_REASON_CHARS}",
            "give a short reason and link the incident for the details",
        )
    return reason


def bounded(text: str, limit: int, what: str = "text") -> str:
    """`text` cut to `limit` characters with a note saying so (for PR bodies and commit messages)."""
    if len(text) <= limit:
        return text
    note = f"\n\n… ({what} cut at {limit:,} characters)\n"
    return text[: limit - len(note)] + note
