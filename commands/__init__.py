"""fluxbot's pure core: chat text in, typed commands, `ChangePlan`s and `Message`s out.

Nothing in this package touches the network, git or chat: adapters in `bot/` do that.
"""
