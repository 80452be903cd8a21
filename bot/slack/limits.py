"""Slack's limits, named once. Every number links to the page of Slack's docs that states it.

Block Kit renderers (`bot.slack.blocks`) and the Slack stand-in (`tests.standins.slack`) both read
these, so what fluxbot sends and what the stand-in refuses cannot drift apart.
"""
from __future__ import annotations

# https://docs.slack.dev/reference/block-kit/blocks : "You can include up to 50 blocks in each
# message, and 100 blocks in modals or Home tabs."
MAX_BLOCKS_PER_MESSAGE = 50
MAX_BLOCKS_PER_VIEW = 100

# https://docs.slack.dev/reference/block-kit/blocks/header-block : text is plain_text, max 150.
MAX_HEADER_TEXT = 150

# https://docs.slack.dev/reference/block-kit/blocks/section-block : text max 3000 characters;
# fields: at most 10 items, each at most 2000 characters.
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000

# https://docs.slack.dev/reference/block-kit/blocks/context-block : at most 10 elements.
MAX_CONTEXT_ELEMENTS = 10
# https://docs.slack.dev/reference/block-kit/composition-objects/text-object : min length 1
# (Slack answers `invalid_blocks` for an empty text), max 3000.
MIN_TEXT = 1
MAX_TEXT_OBJECT = 3000

# https://docs.slack.dev/reference/block-kit/blocks/actions-block : at most 25 elements.
MAX_ACTION_ELEMENTS = 25
# https://docs.slack.dev/reference/block-kit/block-elements/button-element : text max 75,
# value max 2000, url max 3000, action_id max 255.
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
# https://docs.slack.dev/reference/block-kit/composition-objects/confirmation-dialog-object :
# title max 100, text max 300.
MAX_CONFIRM_TEXT = 300

# https://docs.slack.dev/reference/methods/chat.postMessage : "truncating text ... to 4,000
# characters is best; Slack truncates messages containing more than 40,000 characters" (`msg_too_long`).
MAX_MESSAGE_TEXT = 40000
FALLBACK_TEXT = 4000

# https://docs.slack.dev/apis/web-api/rate-limits : chat.postMessage "generally allows an app to post
# 1 message per second to a specific channel", with short bursts over that allowed.
POSTS_PER_SECOND_PER_CHANNEL = 1.0
POST_BURST = 3
