"""The one error boundary: a failure nobody planned for gets a short reference, the log gets
the traceback under it, and the person gets one sentence naming it (never the traceback).

    reference = logged_reference(log, "a Slack request failed after its ack")
    await surface.private(messages.failed_after_ack(reference))

A failure because the database is away is planned for: the outage itself is logged once by the
watcher (`bot/ops/database.py`), so here it is one WARNING line with the reason and no
traceback, however many notices or requests it cut short.
"""

from __future__ import annotations

import logging
import sys
import uuid

from bot.storage.failures import database_failure


def new_reference() -> str:
    """Eight hex digits a person can quote and an operator can find in the log."""
    return uuid.uuid4().hex[:8]


def logged_reference(log: logging.Logger, what: str) -> str:
    """Log the exception being handled as `what (reference …)`, with its traceback; return the
    reference for the sentence the person gets."""
    reference = new_reference()
    handled = sys.exc_info()[1]
    away = database_failure(handled) if handled is not None else None
    if away is not None:
        log.warning("%s (reference %s): the database cannot be used (%s)", what, reference, away)
    else:
        log.exception("%s (reference %s)", what, reference)
    return reference
