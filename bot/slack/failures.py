"""What a failed Slack call means for the message it carried: try again later, or never.

The outbox (`bot.slack.outbox`) asks `classify` about each failure and waits `backoff` seconds
before the next try; the Slack surface asks it why `views.open` failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from slack_sdk.errors import SlackApiError

# Errors Slack documents as passing (https://api.slack.com/web#errors and each method's page):
# worth another try later. Any other `ok: false` error will answer the same way again.
TRANSIENT_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
}


@dataclass(frozen=True)
class Failure:
    """What a failed Slack call means for its row."""

    retry: bool
    error: str
    retry_after: float | None = None


def classify(exc: BaseException) -> Failure:
    """Passing trouble (429, 5xx, timeouts, connections) is retried; Slack's other `ok: false`
    answers are final. Works on answers that are not JSON (an HTML 500 page)."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = getattr(response, "data", None)
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        retry_after = _retry_after(getattr(response, "headers", None))
        if status == 429 or error == "ratelimited":
            return Failure(True, "ratelimited", retry_after)
        if status >= 500 or error in TRANSIENT_ERRORS:
            return Failure(True, error or f"HTTP {status}", retry_after)
        return Failure(False, error or f"HTTP {status}")
    if isinstance(exc, TimeoutError | OSError | aiohttp.ClientError | httpx.HTTPError):
        return Failure(True, type(exc).__name__)
    # A bug or an answer nobody expected: retried a bounded number of times, then given up.
    return Failure(True, type(exc).__name__)


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    for name, value in dict(headers).items():
        if str(name).lower() == "retry-after":
            values = value if isinstance(value, list) else [value]
            try:
                return max(0.0, float(values[0]))
            except (TypeError, ValueError, IndexError):
                return None
    return None


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds before the next try: Slack's Retry-After when given, else 1, 2, 4 … 300."""
    if retry_after is not None:
        return retry_after
    return float(min(300, 2 ** max(0, attempts - 1)))
