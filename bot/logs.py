"""Logging setup with secrets redacted at the logging layer, whatever a library puts in a record."""
from __future__ import annotations

import logging
import re
import threading
from datetime import datetime, timezone
from typing import IO

_TOKEN_SHAPES = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposer]-[A-Za-z0-9-]{8,}|xapp-[A-Za-z0-9-]{8,}"
    r"|(?i:authorization:\s*(?:token|bearer|basic)\s+)\S+)"
)


# Bolt logs a bad-signature request's whole body at INFO (slack_bolt/middleware/request_verification/
# request_verification.py, `_debug_log_error`): unsigned input, possibly huge, with `token` and
# `response_url` fields. Kept: that it happened, and the body's size.
_BOLT_BAD_SIGNATURE = re.compile(r"^(Invalid request signature detected) \(signature: .*?, timestamp: .*?, body: (.*)\)$",
                                 re.S)
# Bolt warns at every start when SLACK_BOT_TOKEN is in the environment and a client is given
# (slack_bolt/logger/messages.py `warning_client_prioritized_and_token_skipped`): fluxbot gives the
# client on purpose, so the warning says nothing an operator can act on.
_DROPPED = {"As you gave `client` as well, `token` will be unused."}
# No log line carries more than this (a library logging a request or a response whole).
MAX_MESSAGE = 8192


def _shorten(message: str) -> str:
    bad = _BOLT_BAD_SIGNATURE.match(message)
    if bad:
        return f"{bad.group(1)} (request body of {len(bad.group(2))} characters not logged)"
    if len(message) > MAX_MESSAGE:
        return f"{message[:MAX_MESSAGE]}... [{len(message) - MAX_MESSAGE} more characters not logged]"
    return message


class Redactor(logging.Filter):
    """Replaces known secrets, and anything shaped like a GitHub or Slack token, in every record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, *secrets: str | None) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 6)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_SHAPES.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in _DROPPED:
            return False
        record.msg = self.redact(_shorten(message))
        record.args = ()
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname", "filename", "module", "funcName"):
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
            # formatters (python-json-logger's) format exc_info again when it is there: only the
            # redacted text may be used
            record.exc_info = None
        return True


REDACTOR = Redactor()


def rfc3339(record: logging.LogRecord) -> str:
    """The record's time as RFC 3339 in UTC, to the millisecond: 2026-11-25T18:25:40.123+00:00."""
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class _Rfc3339:
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 (logging's name)
        return rfc3339(record)


def setup_logging(level: int = logging.WARNING, structured: bool = False, stream: IO[str] | None = None) -> None:
    """Logs on stderr behind the redactor: JSON lines for the server, readable text for the shell."""
    handler = logging.StreamHandler(stream)  # stderr by default
    if structured:
        from pythonjsonlogger.json import JsonFormatter

        class Json(_Rfc3339, JsonFormatter):
            pass

        handler.setFormatter(Json("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        class Text(_Rfc3339, logging.Formatter):
            pass

        handler.setFormatter(Text("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # An exception nobody caught in a thread goes through the redactor too, not straight to stderr.
    threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("fluxbot.threads").error("uncaught exception in thread %s", name,
                                               exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
