"""One path for every request: typed text, button clicks and modal submissions.

    text | click ─► grammar.parse ─► Roles.check ─► (form?) ─► validate ─┬► ApprovalFlow.request
    modal values ───────────────────► Roles.check ─────────► validate ─┘   └► Executor.execute
                                                                              ─► reply shown

The dispatcher parses, asks the one role check, and routes: a command that needs approval goes
to the approval flow (after the executor made its relative inputs concrete), any other to the
executor, whose reply it then shows. Every refusal is one private sentence and an audit row.
Adapters (Slack, the console) hand requests in through `run`, `run_values` and `check_form`
(`Intake`) and never reach past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from itertools import takewhile
from typing import Any, Protocol

from bot import messages
from bot.approvals.flow import ApprovalFlow
from bot.approvals.state import Status
from bot.catalog import Catalog
from bot.executor import Executor
from bot.roles import Roles
from bot.storage.audit import AuditLog, Entry
from bot.storage.store import STORED_PREFIX, StoredCommands
from bot.surface import Surface, guarded
from commands import grammar
from commands.base import Command, is_secret
from commands.secrets import MASK, redact

log = logging.getLogger(__name__)


class Intake(Protocol):
    """How an adapter hands a request in (the dispatcher's entry points)."""

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool: ...

    async def run_values(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> dict[str, str] | None: ...

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]: ...


class Dispatcher:
    def __init__(
        self,
        *,
        catalog: Catalog,
        roles: Roles,
        flow: ApprovalFlow,
        executor: Executor,
        audit: AuditLog,
        stored: StoredCommands,
    ) -> None:
        self.catalog = catalog
        self.roles = roles
        self.flow = flow
        self.executor = executor
        self.audit = audit
        self.stored = stored
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- requests in flight ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _working(self) -> AsyncIterator[None]:
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0:
                self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Wait for requests in flight (a deploy's SIGTERM); False if some were still running."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("stopping with %d requests still running", self._busy)
            return False
        return True

    # --- entry points --------------------------------------------------------------------

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        """A typed command or a button click: `/slash words…`. False when it was refused or
        failed (the user has been told why)."""
        async with self._working():
            return await self._run(line, user=user, channel=channel, surface=guarded(surface))

    async def _run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        if line.startswith(STORED_PREFIX):
            stored = await self.stored.load(line)
            if stored is None:
                await surface.private("That button has expired; type the command instead.")
                return False
            line = stored
        slash, _, text = line.strip().removeprefix("/").partition(" ")
        if (too_long := grammar.text_refusal(text)) is not None:  # before any parsing
            await surface.private(too_long)
            return False
        slash = slash.lower()
        if slash not in self.catalog.slashes:
            await surface.private(messages.unknown_slash(slash, self.catalog.slashes))
            return False
        try:
            parsed = grammar.parse(slash, text, self.catalog.commands)
        except grammar.GrammarError as exc:
            await surface.private(exc.message)
            # The words that name what was tried, up to the first value: a value may be a
            # secret the grammar never got to mask (`/billing mfa confirm 123456 extra`).
            words = list(takewhile(_naming, text.split()[:3]))
            await self.audit.invalid(
                f"/{slash}", {"words": redact(" ".join(words))}, user, channel, exc.message
            )
            return False
        if isinstance(parsed, grammar.HelpRequest):
            await surface.private(await self.help(parsed, text, user))
            return True
        command = parsed.command
        if not await self._allowed(command, user, channel, surface, parsed.values):
            return False
        if command.form and not parsed.values and await surface.open_form(command, command.form):
            return True
        errors = await self._run_values(
            command, parsed.values, user=user, channel=channel, surface=surface
        )
        return errors is None

    async def run_values(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> dict[str, str] | None:
        """Validate and go on (a submitted form, checked by `check_form` first). Returns None
        on success, else what went wrong by field (the user has been told)."""
        async with self._working():
            return await self._run_values(
                command, values, user=user, channel=channel, surface=guarded(surface)
            )

    async def run_step(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> bool:
        """A Workflow Builder step (bot/steps.py): the role check of a typed command, then as
        a submitted form. False when it was refused or failed (the surface was told why)."""
        async with self._working():
            surface = guarded(surface)
            if not await self._allowed(command, user, channel, surface, values):
                return False
            errors = await self._run_values(
                command, values, user=user, channel=channel, surface=surface
            )
            return errors is None

    async def _run_values(
        self,
        command: Command[Any, Any],
        values: Mapping[str, Any],
        *,
        user: str,
        channel: str,
        surface: Surface,
    ) -> dict[str, str] | None:
        try:
            args = grammar.validate(command, values)
        except grammar.FieldErrors as exc:
            await surface.private(exc.message)
            await self.audit.invalid(
                command.audit_name, safe_values(command, values), user, channel, str(exc)
            )
            return exc.errors
        if command.approval:
            exact = await self.executor.resolve(
                command, args, user=user, channel=channel, surface=surface
            )
            if exact is None:
                return {"_": "not requested"}
            approval = await self.flow.request(
                command, exact, user=user, channel=channel, surface=surface
            )
            return None if approval else {"_": "not requested"}
        outcome = await self.executor.execute(
            command, args, user=user, channel=channel, surface=surface
        )
        if outcome.reply is not None and outcome.status is Status.DONE:
            await self.flow.show(outcome.reply, channel=channel, origin=user, surface=surface)
        return None if outcome.status is Status.DONE else {"_": outcome.summary}

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        """A modal submission's fast checks (role, validation), answered before Slack's ack.

        Returns the command and errors keyed by field (the modal's block ids)."""
        command = self.catalog.command(path)
        if command is None:
            return None, {"_": f"/{path} no longer exists"}
        first = next(iter(command.form.fields)).name if command.form else "_"
        denied = await self.roles.check(user, command.role)
        if denied is not None:
            return command, {first: denied.sentence(command.audit_name)}
        try:
            grammar.validate(command, values)
        except grammar.FieldErrors as exc:
            await self.audit.invalid(
                command.audit_name, safe_values(command, values), user, channel, str(exc)
            )
            fields = set(command.args.model_fields)
            return command, {(k if k in fields else first): v for k, v in exc.errors.items()}
        return command, {}

    async def help(self, request: grammar.HelpRequest, text: str, user: str) -> str:
        role = await self.roles.role_of(user)
        words = text.split()
        commands, slashes = self.catalog.commands, self.catalog.slashes
        if request.slash == self.catalog.billing.name and words[:1] == ["help"]:
            if len(words) == 1:
                return messages.overview(commands, self.catalog.modes(), role)
            topic = words[1].lower().removeprefix("/")
            if topic in slashes:  # `/billing help smsc`
                return grammar.help_text(topic, (), commands, role=role)
            own = [c for c in commands if c.slash == request.slash]
            asked = tuple(w.lower() for w in words[1:])
            if any(c.words[: len(asked)] == asked for c in own):  # `/billing help audit`
                return grammar.help_text(request.slash, asked, commands, role=role)
            known = [*slashes, *sorted({c.words[0] for c in own})]
            return messages.unknown_help_topic(words[1], known)
        return grammar.help_text(request.slash, request.prefix, commands, role=role)

    # --- the role check --------------------------------------------------------------------

    async def _allowed(
        self,
        command: Command[Any, Any],
        user: str,
        channel: str,
        surface: Surface,
        values: Mapping[str, Any],
    ) -> bool:
        denied = await self.roles.check(user, command.role)
        if denied is None:
            return True
        await surface.private(denied.sentence(command.audit_name))
        await self.audit.record(
            Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=safe_values(command, values),
                decision="refused",
                outcome="denied",
                detail=f"needs {command.role.label}",
                provider=self.catalog.owner(command),
            )
        )
        return False


def _naming(word: str) -> bool:
    """A command word rather than a value: no `=`, no digit."""
    return "=" not in word and not any(c.isdigit() for c in word)


def safe_values(command: Command[Any, Any], values: Mapping[str, Any]) -> dict[str, str]:
    """Raw (unvalidated) values for the audit log: secret fields masked, secrets redacted."""
    fields = command.args.model_fields
    safe: dict[str, str] = {}
    for name, value in values.items():
        info = fields.get(name)
        secret = info is not None and is_secret(info)
        safe[name] = MASK if secret else redact(str(value))[:200]
    return safe
