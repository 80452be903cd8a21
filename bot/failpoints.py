"""Named points where a test can make the process die (SIGKILL), to prove crash safety.

`FLUXBOT_FAILPOINT=after-push` kills fluxbot right after the branch push, and so on. Unset (always,
outside tests) it costs one dictionary lookup.
"""
from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("FLUXBOT_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
