"""Every command the bot answers, and the provider behind each: built once from the registry.

    ProviderRuntime   a provider as this process runs it: live, on its sandbox, or disabled
    Catalog           the commands of the bot's own `/billing` and of every provider: lookups by
                      path and slash, the owner of a command, its provider's client, schedule
                      kinds and their lead times

It holds no state that changes: dispatch, the executor, the approval flow, the schedules and the
adapters all read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot import messages
from commands.base import Args, Command, Lead, Provider, ScheduleKind
from commands.sandbox import Sandbox

Mode = Literal["live", "sandbox", "disabled"]


@dataclass
class ProviderRuntime:
    provider: Provider[Any, Any]
    mode: Mode
    client: Any | None = None
    sandbox: Sandbox | None = None

    @property
    def env_prefix(self) -> str:
        settings_model: Any = self.provider.settings
        return str(settings_model.model_config.get("env_prefix", ""))


class Catalog:
    def __init__(self, runtimes: Sequence[ProviderRuntime], billing: Provider[Any, Any]) -> None:
        self.runtimes = list(runtimes)
        self.billing = billing
        self._by_name = {r.provider.name: r for r in self.runtimes}
        self._owner: dict[int, str] = {}
        self.commands: list[Command[Any, Any]] = []
        for provider in [billing, *(r.provider for r in self.runtimes)]:
            for command in provider.commands:
                self._owner[id(command)] = provider.name
                self.commands.append(command)
        self.slashes = sorted({c.slash for c in self.commands})

    def command(self, path: str) -> Command[Any, Any] | None:
        return next((c for c in self.commands if c.path == path), None)

    def owner(self, command: Command[Any, Any]) -> str:
        return self._owner[id(command)]

    def is_billing(self, command: Command[Any, Any]) -> bool:
        return self.owner(command) == self.billing.name

    def runtime(self, name: str) -> ProviderRuntime | None:
        return self._by_name.get(name)

    def modes(self) -> dict[str, Mode]:
        return {r.provider.name: r.mode for r in self.runtimes}

    def disabled(self, command: Command[Any, Any]) -> str | None:
        """Why the command's provider cannot run it (switched off), or None."""
        runtime = self.runtime(self.owner(command))
        if runtime is None or runtime.client is not None:
            return None
        return messages.provider_disabled(runtime.provider.title, command.slash, runtime.env_prefix)

    def schedule_kinds(self) -> dict[str, tuple[str, ScheduleKind[Any, Any]]]:
        """Every provider's schedule kinds: name → (provider name, kind)."""
        return {
            name: (r.provider.name, kind)
            for r in self.runtimes
            for name, kind in r.provider.schedule_kinds.items()
        }

    def lead(self, name: str, args: Args) -> Lead | None:
        """How long before its time a run of kind `name` with `args` starts (None: at its
        time, which is also the answer while its provider is not configured: the run is
        skipped then)."""
        found = self.schedule_kinds().get(name)
        if found is None:
            return None
        owner, kind = found
        runtime = self.runtime(owner)
        if kind.lead is None or runtime is None or runtime.client is None:
            return None
        return kind.lead(runtime.client, args)
