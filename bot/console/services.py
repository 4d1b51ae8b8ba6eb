"""What the console uses of the bot, and nothing more: it hands lines and form answers to an
`Intake`, and reads the commands and provider runtimes from `Providers`. The dispatcher has
both shapes today; `entry.run_console` is the one place that says so."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.dispatch import ProviderRuntime
from bot.surface import Surface
from commands.base import Command


class Intake(Protocol):
    """Where typed lines, button clicks and form answers go to be checked and run."""

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        """A typed command or a button click; False when it was refused or failed (the user
        has been told why)."""
        ...

    async def run_values(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> dict[str, str] | None:
        """A filled-in form: validate and go on. None on success, else the errors by field."""
        ...

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        """A form's fast checks (role, validation): the command (None if it no longer exists)
        and the errors by field."""
        ...


class Providers(Protocol):
    """The declared commands (for completion and the history's masking) and the providers'
    runtimes (for the banner and `:sandbox`)."""

    @property
    def commands(self) -> Sequence[Command[Any, Any]]: ...

    @property
    def runtimes(self) -> Sequence[ProviderRuntime]: ...

    def runtime(self, name: str) -> ProviderRuntime | None: ...
