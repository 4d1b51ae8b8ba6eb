"""The one error boundary: a failure nobody planned for gets a short reference, the log gets
the traceback under it, and the person gets one sentence naming it (never the traceback).

    reference = logged_reference(log, "a Slack request failed after its ack")
    await surface.private(messages.failed_after_ack(reference))
"""

from __future__ import annotations

import logging
import uuid


def new_reference() -> str:
    """Eight hex digits a person can quote and an operator can find in the log."""
    return uuid.uuid4().hex[:8]


def logged_reference(log: logging.Logger, what: str) -> str:
    """Log the exception being handled as `what (reference …)`, with its traceback; return the
    reference for the sentence the person gets."""
    reference = new_reference()
    log.exception("%s (reference %s)", what, reference)
    return reference
