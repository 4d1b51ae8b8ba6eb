"""Cancelling a command and everything it started.

Each console command runs in a task of its own. Dispatch runs a handler in a task of its own
(and a heartbeat beside it); cancelling the command must stop those too, or a handler would go
on to call the provider after the person was told "cancelled". New tasks inherit their
creator's context, so a task factory can file each one under the command that (indirectly)
created it. SIGINT is routed to the console while it runs, instead of ending the program.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import signal
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The tasks of the console command whose context this is (None outside every command).
_GROUP: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "console_command_tasks", default=None
)


def _filing_factory(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, **kwargs)
    context: contextvars.Context | None = kwargs.get("context")
    group = context.get(_GROUP) if context is not None else _GROUP.get()
    if group is not None:
        group.add(task)
        task.add_done_callback(group.discard)
    return task


def file_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """From now on, file every new task of `loop` under the command that created it."""
    if loop.get_task_factory() is None:
        loop.set_task_factory(_filing_factory)  # type: ignore[arg-type]


@dataclass(eq=False)
class Running:
    """One command in flight."""

    number: int
    line: str
    user: str
    started: datetime
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    task: asyncio.Task[bool | None] | None = None
    stopping: bool = False

    def context(self) -> contextvars.Context:
        """A copy of the current context in which new tasks are filed under this command."""
        context = contextvars.copy_context()
        context.run(_GROUP.set, self.tasks)
        return context

    async def stop_the_rest(self) -> None:
        """In the command's own task, once it was cancelled: take the cancellation back (the
        task goes on to say so), cancel every other task the command started, and wait until
        they have unwound."""
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        others = [t for t in self.tasks if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


@contextlib.contextmanager
def on_sigint(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT to `handler` while inside (instead of cancelling the whole program)."""
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)
