"""Whether the work in this task has handed its request to a provider yet.

A failure after that point cannot be answered with "nothing was done": the provider may have
acted (money moved) while the database, say, could not record it. The executor marks the point
just before a handler runs; the Slack error boundary (bot/slack/listeners.py `AfterAck`) reads
it for the work it ran. A `ContextVar`, so each task (each request) has its own: a request's
work is awaited inside the task `AfterAck` starts for it, and a task begun elsewhere starts
unmarked (https://docs.python.org/3/library/contextvars.html#asyncio-support).
"""

from __future__ import annotations

from contextvars import ContextVar

_reached: ContextVar[bool] = ContextVar("provider_reached", default=False)


def mark() -> None:
    """The request is about to reach its provider."""
    _reached.set(True)


def provider_reached() -> bool:
    return _reached.get()
