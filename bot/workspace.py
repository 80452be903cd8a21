"""Moved to `bot.git.workspace`; kept so existing imports keep working."""
from bot.git.workspace import *  # noqa: F401,F403
from bot.git.workspace import MergeConflict, OriginUnavailable, Pushed, Workspace, WorkspaceError  # noqa: F401
