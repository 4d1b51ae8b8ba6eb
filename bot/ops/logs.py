"""Logging: quiet by default, one line per command and schedule run, text or JSON.

`configure(level, fmt)` sends every record to stderr, redacted (`install_log_redaction`), as
text (`2026-05-04 09:00:00,123 INFO bot.commands: …`) or, with `LOG_FORMAT=json`, one JSON
object per line. Libraries that talk on every tick or request are set to WARNING unless the
level is DEBUG: Alembic's plugin and migration notes, APScheduler's job lines, uvicorn's access
lines, httpx's request lines.

`command_line` is an audit listener: each audit entry becomes one INFO line on `bot.commands`
with who, what, the decision and outcome, the duration and the audit row as reference, as
message text and as fields (`user`, `command`, `decision`, `outcome`, `duration_ms`,
`provider`, `approval`, `audit_id`, and `detail` when something went wrong).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from bot.storage.audit import Entry
from commands.secrets import install_log_redaction, redact, redact_any

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log at INFO on every start, tick or request.
CHATTY = ("alembic", "apscheduler", "uvicorn.access", "httpx", "httpcore")
COMMAND_FIELDS = (
    "user",
    "command",
    "decision",
    "outcome",
    "duration_ms",
    "provider",
    "approval",
    "audit_id",
    "detail",
)
DETAIL_CHARS = 300

commands_log = logging.getLogger("bot.commands")

# Every attribute a LogRecord has before `extra` adds fields; the rest are ours to show.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the record's extra fields.

    Written here rather than taken from a library: it is one `json.dumps`, and the extra fields
    must go through the same redaction as the message (the record factory redacts the message
    only; `extra` is attached after it runs).
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                data[key] = redact_any(value)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = redact(record.exc_text)
        if record.stack_info:
            data["stack"] = redact(record.stack_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class _DropBoltTokenWarning(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment itself (`token or os.environ[…]` in
    `AsyncApp.__init__`) even when given a ready client, then warns that the token it found will
    be unused. The client carries that same token, so the warning says nothing; it cannot be
    avoided short of deleting the variable from the environment."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so configuring again replaces it and leaves other handlers alone."""


def configure(level: int | str = logging.INFO, fmt: LogFormat = "text") -> None:
    install_log_redaction()
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_DropBoltTokenWarning())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = logging.WARNING if root.getEffectiveLevel() > logging.DEBUG else logging.NOTSET
    for name in CHATTY:
        logging.getLogger(name).setLevel(quiet)


def command_line(entry: Entry, audit_id: int | None) -> None:
    """Log one audit entry as one INFO line (an `AuditLog` listener)."""
    fields: dict[str, Any] = {
        "user": entry.user_id,
        "command": entry.command,
        "decision": entry.decision,
        "outcome": entry.outcome,
        "duration_ms": entry.duration_ms,
        "provider": entry.provider,
        "approval": entry.approval_id,
        "audit_id": audit_id,
    }
    if entry.outcome not in ("done", "pending", "ok") and entry.detail:
        fields["detail"] = redact(entry.detail)[:DETAIL_CHARS]
    took = f" in {entry.duration_ms} ms" if entry.duration_ms is not None else ""
    approval = f", approval #{entry.approval_id}" if entry.approval_id is not None else ""
    reference = f"audit #{audit_id}" if audit_id is not None else "not in the audit log"
    detail = f": {fields['detail']}" if "detail" in fields else ""
    commands_log.info(
        "%s by %s: %s, %s%s (%s%s)%s",
        entry.command,
        entry.user_id,
        entry.decision,
        entry.outcome,
        took,
        reference,
        approval,
        detail,
        extra=fields,
    )
