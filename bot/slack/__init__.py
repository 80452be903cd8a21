"""Slack, by platform: `transport` (Bolt app, outbox), `blocks` (Block Kit), `markup` (decode in,
escape out), `limits` (Slack's numbers, named once)."""
from bot.slack.transport import (Directory, GroupDirectory, Pacer, SlackTransport, channel_problem, slack_token_problem,
                                 web_client)

__all__ = ["Directory", "GroupDirectory", "Pacer", "SlackTransport", "channel_problem", "slack_token_problem", "web_client"]
