"""What the console uses of the bot, and nothing more: it hands lines and form answers to an
`Intake` (`bot.dispatch`, the dispatcher's entry points), and reads the commands and provider
runtimes from `Providers` (the catalog). `entry.run_console` is the one place that wires them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bot.catalog import ProviderRuntime
from bot.dispatch import Intake
from commands.base import Command


class Providers(Protocol):
    """The declared commands (for completion and the history's masking) and the providers'
    runtimes (for the banner and `:sandbox`)."""

    @property
    def commands(self) -> Sequence[Command[Any, Any]]: ...

    @property
    def runtimes(self) -> Sequence[ProviderRuntime]: ...

    def runtime(self, name: str) -> ProviderRuntime | None: ...


__all__ = ["Intake", "Providers"]
