"""Secret redaction for every text that leaves the process: logs, messages, audit rows, files.

Providers register their secret values when they build a client; `redact()` replaces them (and
anything that looks like a secret query parameter or token) with `••••••`. The log record
factory installed by `install_log_redaction()` applies it to every record from every library,
tracebacks included, before any handler sees it.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

MASK = "••••••"

# Query or form parameters that carry secrets in the providers' APIs.
SECRET_PARAMS = ("api_key", "psw", "password", "token", "google_captcha", "at_password")
_PARAM = re.compile(
    r"(?P<key>\b(?:"
    + "|".join(SECRET_PARAMS)
    + r"))(?P<sep>=|%3D|[\"']?\s*:\s*[\"']?)(?P<value>[^&\s\"',}<>`][^&\s\"',}]*)",
    re.IGNORECASE,
)
# `xwfp-`: the short-lived token a Workflow Builder step's `function_executed` event carries
# (`bot_access_token`, https://api.slack.com/events/function_executed); never used, never shown.
_SLACK_TOKEN = re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+|\bxapp-[A-Za-z0-9-]+|\bxwfp-[A-Za-z0-9-]+")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Remember values that must never be shown. Short values are ignored (too many false hits)."""
    with _lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets.add(value)
                for variant in _variants(value):
                    _secrets.add(variant)


def reset_secrets() -> None:
    """Forget every registered value, so a test sees only what its own code registered."""
    with _lock:
        _secrets.clear()


def _variants(value: str) -> Iterable[str]:
    from urllib.parse import quote, quote_plus

    yield quote(value, safe="")
    yield quote_plus(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _PARAM.sub(lambda m: f"{m.group('key')}{m.group('sep')}{MASK}", text)
    return _SLACK_TOKEN.sub(MASK, text)


def redact_any(value: Any) -> Any:
    """Redact strings inside JSON-like data."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_any(v) for v in value]
    return value


_installed = False


def install_log_redaction() -> None:
    """Make every log record's message and traceback redacted at creation (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            record.msg = redact(record.getMessage())
            record.args = None
        except Exception:  # a broken format string must not lose the record
            record.msg = redact(str(record.msg))
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
