"""Moved to `bot.git.checks`; kept so existing imports keep working."""
from bot.git.checks import *  # noqa: F401,F403
from bot.git.checks import CheckReport, run_checks  # noqa: F401
