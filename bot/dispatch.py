"""One path for every request: typed text, modal submissions, button clicks, schedules.

    text ─► grammar.parse ─► role check ─► (form?) ─► validate ─► ApprovalFlow.request | run
                                                                                        │
    handler(client, args, ctx) ─► Reply ─► audit row ─► Surface (guarded; Slack: outbox) ◄┘

Handlers never catch: `FieldErrors`, `CommandError` and the `ProviderError` tree become one
private sentence here, and a lost answer to a write becomes "outcome unknown". What a run did is
audited before anything is shown, and showing never raises. Approvals live in
`bot.approvals.flow`; the dispatcher is the runner it calls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import messages
from bot.approvals.flow import ApprovalFlow
from bot.approvals.policy import Policy
from bot.approvals.state import Approval, Approvals, Outcome, Status
from bot.config import Settings
from bot.progress import ProgressMessage
from bot.roles import Roles, refusal
from bot.schedules.engine import Scheduler
from bot.slack.input_limits import text_refusal
from bot.storage.audit import AuditLog, Entry
from bot.storage.store import (
    MAX_BUTTON_VALUE,
    STORED_PREFIX,
    ReportHistory,
    load_command,
    store_command,
    utcnow,
)
from bot.surface import Surface, guarded
from commands import grammar
from commands.base import (
    Args,
    Command,
    CommandError,
    Context,
    Evidence,
    Provider,
    Reply,
    Role,
    ScheduleKind,
)
from commands.http import OutcomeUnknown, ProviderError
from commands.sandbox import Sandbox
from commands.secrets import MASK, redact

log = logging.getLogger(__name__)

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


@dataclass
class Dispatcher:
    settings: Settings
    engine: AsyncEngine
    roles: Roles
    runtimes: Sequence[ProviderRuntime]
    system_surface: Callable[[str], Surface]
    # A person's direct message with the bot (None: it could not be opened). Without one (the
    # console, tests) `system_surface(user)` stands in for it.
    direct_surface: Callable[[str], Awaitable[Surface | None]] | None = None
    billing: Provider[Any, Any] | None = None
    # Builds the client billing commands get (bot.billing.Ops), given this dispatcher.
    billing_client: Callable[[Dispatcher, Surface], Any] | None = None
    clock: Callable[[], datetime] = utcnow
    working_after: float = 2.0
    heartbeat_every: float = 10.0
    stale_after: timedelta = timedelta(minutes=2)
    scheduler: Scheduler | None = None
    policy: Policy | None = None
    commands: list[Command[Any, Any]] = field(init=False)
    approvals: Approvals = field(init=False)
    audit: AuditLog = field(init=False)
    flow: ApprovalFlow = field(init=False)
    _owner: dict[int, str] = field(init=False)
    _by_name: dict[str, ProviderRuntime] = field(init=False)
    _busy: int = field(init=False, default=0)
    _idle: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()
        self.approvals = Approvals(
            self.engine, ttl=timedelta(hours=self.settings.approval_ttl_hours), clock=self.clock
        )
        self.audit = AuditLog(self.engine)
        self.flow = ApprovalFlow(
            approvals=self.approvals,
            audit=self.audit,
            runner=self,
            system_surface=self.system_surface,
            tz=self.settings.tz,
            stale_after=self.stale_after,
        )
        self.flow.scheduler, self.flow.policy = self.scheduler, self.policy
        self._by_name = {r.provider.name: r for r in self.runtimes}
        self._owner = {}
        self.commands = []
        sources = [*([self.billing] if self.billing else []), *(r.provider for r in self.runtimes)]
        for provider in sources:
            for command in provider.commands:
                self._owner[id(command)] = provider.name
                self.commands.append(command)

    # --- lookups -------------------------------------------------------------------------

    @property
    def slashes(self) -> list[str]:
        return sorted({c.slash for c in self.commands})

    def command(self, path: str) -> Command[Any, Any] | None:
        return next((c for c in self.commands if c.path == path), None)

    def owner(self, command: Command[Any, Any]) -> str:
        return self._owner[id(command)]

    def runtime(self, name: str) -> ProviderRuntime | None:
        return self._by_name.get(name)

    def disabled(self, command: Command[Any, Any]) -> str | None:
        """Why the command's provider cannot run it (switched off), or None."""
        runtime = self.runtime(self.owner(command))
        if runtime is None or runtime.client is not None:
            return None
        return messages.provider_disabled(runtime.provider.title, command.slash, runtime.env_prefix)

    async def role_of(self, user: str) -> Role | None:
        return await self.roles.role_of(user)

    async def probe(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str
    ) -> Evidence:
        """Run a write's `check_outcome` read; what cannot be read says so instead."""
        hint = command.unknown_hint(args).text if command.unknown_hint else ""
        if command.check_outcome is None:
            return Evidence(text=messages.no_check(command.audit_name, hint), verdict="unclear")
        runtime = self.runtime(self.owner(command))
        if runtime is None or runtime.client is None:
            why = self.disabled(command) or "the provider is switched off"
            return Evidence(text=why, verdict="unclear")
        ctx = Context(user_id=user, channel_id=channel, tz=self.settings.tz, clock=self.clock)
        try:
            return await command.check_outcome(runtime.client, args, ctx)
        except ProviderError as exc:
            text = messages.provider_failed(command.audit_name, exc)
            return Evidence(text=f"The check could not be made: {text}", verdict="unclear")

    async def direct(self, user: str) -> Surface | None:
        """Where something for `user` alone goes, files included: their direct message."""
        if self.direct_surface is None:
            return guarded(self.system_surface(user))
        surface = await self.direct_surface(user)
        return guarded(surface) if surface is not None else None

    def schedule_kinds(self) -> dict[str, tuple[str, ScheduleKind[Any, Any]]]:
        """Every provider's schedule kinds: name → (provider name, kind)."""
        return {
            name: (r.provider.name, kind)
            for r in self.runtimes
            for name, kind in r.provider.schedule_kinds.items()
        }

    # --- entry points --------------------------------------------------------------------

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

    async def run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        """A typed command or a button click: `/slash words…`. False when it was refused or
        failed (the user has been told why)."""
        async with self._working():
            return await self._run(line, user=user, channel=channel, surface=guarded(surface))

    async def _run(self, line: str, *, user: str, channel: str, surface: Surface) -> bool:
        if line.startswith(STORED_PREFIX):
            stored = await load_command(self.engine, line)
            if stored is None:
                await surface.private("That button has expired; type the command instead.")
                return False
            line = stored
        slash, _, text = line.strip().removeprefix("/").partition(" ")
        if (too_long := text_refusal(text)) is not None:  # before any parsing (console, sockets)
            await surface.private(too_long)
            return False
        slash = slash.lower()
        if slash not in self.slashes:
            await surface.private(messages.unknown_slash(slash, self.slashes))
            return False
        try:
            parsed = grammar.parse(slash, text, self.commands)
        except grammar.GrammarError as exc:
            await surface.private(exc.message)
            words = [w for w in text.split()[:4] if "=" not in w][:3]
            await self._audit_invalid(
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
        """Validate and go on. Returns None on success, else what went wrong by field
        (the user has been told)."""
        async with self._working():
            return await self._run_values(
                command, values, user=user, channel=channel, surface=guarded(surface)
            )

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
            await self._audit_invalid(
                command.audit_name, safe_values(command, values), user, channel, str(exc)
            )
            return exc.errors
        if command.approval:
            exact = await self._resolve(command, args, user=user, channel=channel, surface=surface)
            if exact is None:
                return {"_": "not requested"}
            approval = await self.flow.request(
                command, exact, user=user, channel=channel, surface=surface
            )
            return None if approval else {"_": "not requested"}
        outcome = await self.execute(command, args, user=user, channel=channel, surface=surface)
        return None if outcome.status is Status.DONE else {"_": outcome.summary}

    async def _resolve(
        self, command: Command[Any, Any], args: Args, *, user: str, channel: str, surface: Surface
    ) -> Args | None:
        """Relative inputs made concrete before an approval is asked (`Command.resolve`), so the
        card shows and the run sends the same values however late it is approved. None when
        they cannot be (the requester has been told why; nothing was requested)."""
        client = self._client(command, surface)
        if command.resolve is None or client is None:  # switched off: the request says so
            return args
        ctx = Context(user_id=user, channel_id=channel, tz=self.settings.tz, clock=self.clock)
        try:
            resolved: Args = await command.resolve(client, args, ctx)
            return resolved
        except CommandError as exc:
            await surface.private(messages.not_requested(exc.message))
            name, shown = command.audit_name, args.preview()
            await self._audit_invalid(name, shown, user, channel, exc.message)
        except ProviderError as exc:
            detail = messages.not_prepared(command.audit_name, exc)
            await surface.private(detail)
            entry = Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=args.preview(),
                decision="not requested",
                outcome=Status.FAILED.value,
                detail=detail,
                provider=self.owner(command),
                provider_status=exc.status,
            )
            await self.audit.record(entry)
        return None

    async def check_form(
        self, path: str, values: Mapping[str, Any], *, user: str, channel: str
    ) -> tuple[Command[Any, Any] | None, dict[str, str]]:
        """A modal submission's fast checks (role, validation), answered before Slack's ack.

        Returns the command and errors keyed by field (the modal's block ids)."""
        command = self.command(path)
        if command is None:
            return None, {"_": f"/{path} no longer exists"}
        first = next(iter(command.form.fields)).name if command.form else "_"
        held = await self.roles.role_of(user)
        if held is None or held < command.role:
            return command, {first: refusal(command.role, held, command.audit_name)}
        try:
            grammar.validate(command, values)
        except grammar.FieldErrors as exc:
            await self._audit_invalid(
                command.audit_name, safe_values(command, values), user, channel, str(exc)
            )
            fields = set(command.args.model_fields)
            return command, {(k if k in fields else first): v for k, v in exc.errors.items()}
        return command, {}

    async def help(self, request: grammar.HelpRequest, text: str, user: str) -> str:
        role = await self.roles.role_of(user)
        words = text.split()
        if self.billing and request.slash == self.billing.name and words[:1] == ["help"]:
            if len(words) == 1:
                return messages.overview(
                    self.commands, {r.provider.name: r.mode for r in self.runtimes}, role
                )
            topic = words[1].lower().removeprefix("/")
            if topic in self.slashes:  # `/billing help smsc`
                return grammar.help_text(topic, (), self.commands, role=role)
            own = [c for c in self.commands if c.slash == request.slash]
            asked = tuple(w.lower() for w in words[1:])
            if any(c.words[: len(asked)] == asked for c in own):  # `/billing help audit`
                return grammar.help_text(request.slash, asked, self.commands, role=role)
            known = [*self.slashes, *sorted({c.words[0] for c in own})]
            return messages.unknown_help_topic(words[1], known)
        return grammar.help_text(request.slash, request.prefix, self.commands, role=role)

    # --- checks --------------------------------------------------------------------------

    async def _allowed(
        self,
        command: Command[Any, Any],
        user: str,
        channel: str,
        surface: Surface,
        values: Mapping[str, Any],
    ) -> bool:
        held = await self.roles.role_of(user)
        if held is not None and held >= command.role:
            return True
        message = refusal(command.role, held, command.audit_name)
        await surface.private(message)
        await self.audit.record(
            Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=safe_values(command, values),
                decision="refused",
                outcome="denied",
                detail=f"needs {command.role.label}",
                provider=self.owner(command),
            )
        )
        return False

    async def _audit_invalid(
        self, name: str, args: dict[str, str], user: str, channel: str, detail: str
    ) -> None:
        await self.audit.record(
            Entry(
                user_id=user,
                channel=channel,
                command=name,
                args=args,
                decision="invalid",
                outcome="rejected input",
                detail=detail,
                provider=name.removeprefix("/").split(" ")[0],
            )
        )

    # --- running -------------------------------------------------------------------------

    async def execute(
        self,
        command: Command[Any, Any],
        args: Args,
        *,
        user: str,
        channel: str,
        surface: Surface,
        approval: Approval | None = None,
        note: str | None = None,
    ) -> Outcome:
        """Run the handler now, audit it, then show its reply. Never raises for provider
        trouble; with an approval, the flow shows the outcome on the card. `note` opens the
        audit row's detail (a scheduled post says which schedule ran it)."""
        surface = guarded(surface)
        provider = self.owner(command)
        started = time.monotonic()
        outcome = await self._call(
            command, args, user=user, channel=channel, surface=surface, approval=approval
        )
        await self.audit.record(
            Entry(
                user_id=user,
                channel=channel,
                command=command.audit_name,
                args=args.preview(),
                decision="executed" if approval else "ran",
                outcome=outcome.status.value,
                detail=f"{note}: {outcome.summary}" if note else outcome.summary,
                provider=provider,
                provider_status=outcome.provider_status,
                duration_ms=int((time.monotonic() - started) * 1000),
                approval_id=approval.id if approval else None,
            )
        )
        if outcome.reply is None or outcome.status is not Status.DONE:
            return outcome  # an unknown's hint was shown privately already
        reply = await self._shown(outcome.reply, channel=channel, user=user, surface=surface)
        if reply is not None and approval is None:
            await surface.send(reply)  # an approved run's reply goes out with its card
        return replace(outcome, reply=reply)

    async def _call(
        self,
        command: Command[Any, Any],
        args: Args,
        *,
        user: str,
        channel: str,
        surface: Surface,
        approval: Approval | None,
    ) -> Outcome:
        client = self._client(command, surface)
        if client is None:
            await surface.private(self.disabled(command) or "That provider is switched off.")
            return Outcome(Status.FAILED, "provider not configured")
        progress = ProgressMessage(surface, command.audit_name)
        ctx = Context(
            user_id=user,
            channel_id=channel,
            tz=self.settings.tz,
            clock=self.clock,
            progress=progress.update,
            notify=surface.private,
            approval_id=approval.id if approval else None,
            history=ReportHistory(self.engine),
        )
        task = asyncio.ensure_future(command.handler(client, args, ctx))
        heartbeat = asyncio.ensure_future(self._beat(approval.id)) if approval else None
        done, _ = await asyncio.wait({task}, timeout=self.working_after)
        if not done and approval is None:  # an approved run says so on its card instead
            await surface.private(messages.working(command.audit_name))  # guarded: never raises
        try:
            reply: Reply = await task
        except OutcomeUnknown as exc:
            hint = command.unknown_hint(args) if command.unknown_hint else None
            text = messages.outcome_unknown(command.audit_name, exc.message, hint)
            if approval is None:
                await surface.private(text)
                if hint and hint.buttons:
                    await surface.send(Reply(text=hint.text, buttons=hint.buttons, private=True))
            return Outcome(Status.UNKNOWN, exc.message, hint, exc.status)
        except ProviderError as exc:
            text = messages.provider_failed(command.audit_name, exc)
            if approval is None:
                await surface.private(text)
            return Outcome(Status.FAILED, text, None, exc.status)
        except CommandError as exc:
            if approval is None:
                await surface.private(exc.message)
            return Outcome(Status.FAILED, exc.message)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("command %s failed (reference %s)", command.audit_name, reference)
            status = Status.FAILED if command.idempotent else Status.UNKNOWN
            text = messages.internal_error(command.audit_name, reference, command.idempotent)
            if approval is None:
                await surface.private(text)
            return Outcome(status, text)
        finally:
            if heartbeat:
                heartbeat.cancel()
        return Outcome(Status.DONE, reply.audit_note or reply.text, reply)

    async def _shown(
        self, reply: Reply, *, channel: str, user: str, surface: Surface
    ) -> Reply | None:
        """A done run's reply, ready to show once its audit row is written: a proposal is put
        up for approval (nothing else to show), long buttons are stored."""
        if reply.proposal is not None:
            await self.flow.propose(reply, channel=channel, origin=user, surface=surface)
            return None
        return await self._short_buttons(reply)

    async def _short_buttons(self, reply: Reply) -> Reply:
        """Buttons whose command is too long for Slack carry a stored reference instead."""
        if all(len(b.command) <= MAX_BUTTON_VALUE for b in reply.buttons):
            return reply
        buttons = [
            b
            if len(b.command) <= MAX_BUTTON_VALUE
            else replace(b, command=await store_command(self.engine, b.command))
            for b in reply.buttons
        ]
        return replace(reply, buttons=buttons)

    def _client(self, command: Command[Any, Any], surface: Surface) -> Any | None:
        name = self.owner(command)
        if self.billing is not None and name == self.billing.name:
            return self.billing_client(self, surface) if self.billing_client else None
        runtime = self.runtime(name)
        return runtime.client if runtime else None

    async def _beat(self, approval_id: int) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every)
            await self.approvals.heartbeat(approval_id)


def safe_values(command: Command[Any, Any], values: Mapping[str, Any]) -> dict[str, str]:
    """Raw (unvalidated) values for the audit log: secret fields masked, secrets redacted."""
    fields = command.args.model_fields
    safe: dict[str, str] = {}
    for name, value in values.items():
        info = fields.get(name)
        secret = info is not None and info.annotation is SecretStr
        safe[name] = MASK if secret else redact(str(value))[:200]
    return safe
