"""Whether the work in this task has handed its request to a provider yet.

A failure after that point cannot be answered with "nothing was done": the provider may have
acted (money moved) while the database, say, could not record it. The Slack error boundary
(bot/slack/listeners.py `AfterAck`) starts a `Watch` for the work it runs; the executor marks
it just before a handler runs. The watch is an object held in a `ContextVar`: a task started
inside the work (a deadline, a dispatch) runs in a copy of the context, where setting the
variable would not be seen back here, but the object it holds is the same one
(https://docs.python.org/3/library/contextvars.html#asyncio-support). A task begun elsewhere
has no watch, and marking there does nothing.
"""

from __future__ import annotations

from contextvars import ContextVar


class Watch:
    """One request's work: has it reached its provider?"""

    def __init__(self) -> None:
        self.reached = False


_watch: ContextVar[Watch | None] = ContextVar("provider_reached", default=None)


def watch() -> Watch:
    """Watch the work this task runs from here on, and the tasks it starts."""
    current = Watch()
    _watch.set(current)
    return current


def mark() -> None:
    """The request is about to reach its provider."""
    current = _watch.get()
    if current is not None:
        current.reached = True
