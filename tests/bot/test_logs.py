"""The server's log lines: RFC 3339 times, secrets redacted (exceptions too), no request bodies."""
from __future__ import annotations

import json
import logging
import re
import threading

import pytest

from bot.logs import REDACTOR, setup_logging


@pytest.fixture
def json_lines():
    """setup_logging as `fluxbot serve` calls it; the lines it wrote. The session's handlers come back."""
    import io

    root = logging.getLogger()
    saved, level, hook = root.handlers[:], root.level, threading.excepthook
    stream = io.StringIO()
    setup_logging(logging.INFO, structured=True, stream=stream)
    REDACTOR.add("xoxb-logs-secret-1")

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]

    yield lines
    root.handlers[:], threading.excepthook = saved, hook
    root.setLevel(level)


def test_times_are_rfc3339_and_exceptions_are_redacted_even_from_threads(json_lines) -> None:
    try:
        raise RuntimeError("Slack said no to xoxb-logs-secret-1")
    except RuntimeError:
        logging.getLogger("fluxbot.test").exception("calling Slack failed")
    thread = threading.Thread(target=lambda: (_ for _ in ()).throw(ValueError("xoxb-logs-secret-1")), name="worker")
    thread.start()
    thread.join()
    lines = json_lines()
    assert len(lines) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"]) for line in lines)
    assert "xoxb-logs-secret-1" not in json.dumps(lines)
    assert "RuntimeError: Slack said no to [redacted]" in lines[0]["exc_info"]
    assert lines[1]["message"] == "uncaught exception in thread worker" and "ValueError: [redacted]" in lines[1]["exc_info"]


def test_bolts_bad_signature_line_keeps_no_body_and_its_token_warning_is_gone(json_lines) -> None:
    bolt = logging.getLogger("slack_bolt.RequestVerification")
    level = bolt.level
    bolt.setLevel(logging.INFO)  # Bolt sets its loggers' levels from the app it built last
    try:
        bolt.info("Invalid request signature detected (signature: v0=abc, timestamp: 1700000000, "
                  "body: token=LEAKED&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FLEAKED)")
    finally:
        bolt.setLevel(level)
    logging.getLogger("slack_bolt.App").warning("As you gave `client` as well, `token` will be unused.")
    logging.getLogger("fluxbot.test").info("x" * 100_000)
    lines = json_lines()
    assert [line["message"] for line in lines][0] == "Invalid request signature detected (request body of 75 characters not logged)"
    assert len(lines) == 2 and "LEAKED" not in json.dumps(lines)
    assert len(lines[1]["message"]) < 9000
