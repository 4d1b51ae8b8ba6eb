"""The vocabulary every provider speaks: roles, replies, the command declaration and its context.

Nothing here knows about Slack. A provider package declares its commands with `Command(...)`;
`bot/` parses text into them, checks roles and approvals, calls the handler and renders the
`Reply` for Slack or the terminal.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar, get_args
from zoneinfo import ZoneInfo

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from commands.sandbox import Sandbox


class Role(enum.IntEnum):
    """Cumulative roles: each one includes every role below it."""

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @property
    def variable(self) -> str:
        """The configuration variable that grants this role."""
        return f"BILLING_{self.name}S"

    @property
    def label(self) -> str:
        return self.name.lower()


class CommandError(Exception):
    """A request the handler cannot carry out, explained in one sentence for the requester."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------------------------
# Replies: what a handler returns. Rendered as Block Kit by bot/slack/blocks.py, as text by
# the console.


@dataclass(frozen=True, kw_only=True)
class Button:
    """A stored command invocation: clicking runs `command` as the clicking user."""

    label: str
    command: str
    style: Literal["primary", "danger"] | None = None


@dataclass(frozen=True, kw_only=True)
class File:
    filename: str
    content: bytes
    title: str
    mime: str = "application/pdf"


@dataclass(frozen=True, kw_only=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    align_right: frozenset[int] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """A command the bot should put up for a person's decision, e.g. from a scheduled reminder.

    The bot stores it as an approval request whose requester is the schedule, so any approver
    may take it, once. `approve_label`/`reject_label` rename the two buttons; `snooze_hours`
    adds a Snooze button that asks again later.
    """

    command: str
    approve_label: str = "Approve"
    reject_label: str = "Reject"
    snooze_hours: int | None = None


# Slack's guide asks for a readable alphanumeric event type named `<resource>_<event>`; the
# bot's are snake_case (`billing_approval`, `billing_audit_anchor`).
EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, kw_only=True)
class MessageMetadata:
    """What a posted message tells other apps and workflows, beside what people read: Slack's
    message metadata (https://api.slack.com/metadata/using), an `event_type` and an
    `event_payload` of text values. Any reply may carry it (an approval card says
    `billing_approval`); only messages posted in a channel carry it, and the console ignores it.
    """

    event_type: str
    payload: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not EVENT_TYPE.match(self.event_type):
            raise ValueError(f"{self.event_type!r} is not a snake_case event type")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.payload.items()):
            raise ValueError(f"{self.event_type}: every payload value is text")


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A result for people: a headline, optional detail, buttons and files.

    `private` replies go only to the requester (login URLs, credentials, errors).
    `reveal` marks a private reply whose text deliberately carries a secret for the requester
    (a one-time login URL): it is shown as is, while every other text is redacted.
    `audit_note` replaces the result text in the audit log when the result itself is sensitive.
    `metadata` goes with the message for other apps to follow (`MessageMetadata`).
    `figures` are the reply's named figures as text exactly as the provider sent them
    (`closing_balance` → `242.08793`): a Workflow Builder step's outputs (`Command.outputs`).
    """

    text: str
    sections: Sequence[str] = ()
    fields: Sequence[tuple[str, str]] = ()
    table: Table | None = None
    buttons: Sequence[Button] = ()
    files: Sequence[File] = ()
    private: bool = False
    reveal: bool = False
    audit_note: str | None = None
    proposal: Proposal | None = None
    metadata: MessageMetadata | None = None
    figures: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Arguments and forms


class Args(BaseModel):
    """Base of every command's argument model.

    `positional` names the fields filled in order from bare words; `rest` (the last positional)
    swallows the remaining words. Every other field is given as `name=value`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    positional: ClassVar[tuple[str, ...]] = ()
    rest: ClassVar[str | None] = None

    def preview(self) -> dict[str, str]:
        """The arguments as shown to people, stored with approvals and audited: secrets masked.
        Validating this mapping again gives back the same arguments (secrets aside)."""
        return self.as_text()

    def as_text(self, *, reveal_secrets: bool = False) -> dict[str, str]:
        """Each given argument as the text the grammar reads back into the same value."""
        shown: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                shown[name] = value.get_secret_value() if reveal_secrets else "••••••"
            else:
                shown[name] = format_value(value)
        return shown


class NoArgs(Args):
    pass


def is_secret(info: FieldInfo) -> bool:
    """A secret argument (`SecretStr`, optional or not): masked in previews, audit rows and the
    console's history."""
    return info.annotation is SecretStr or SecretStr in get_args(info.annotation)


def format_value(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


@dataclass(frozen=True, kw_only=True)
class FormField:
    """One input of a modal. `name` is the Args field it fills."""

    name: str
    label: str
    kind: Literal["text", "secret", "select", "email", "multiline"] = "text"
    options: Sequence[tuple[str, str]] = ()  # (value, label) for selects
    placeholder: str | None = None
    hint: str | None = None
    optional: bool = False


@dataclass(frozen=True, kw_only=True)
class Form:
    """A modal. `fixed` are values the form carries without asking (the request a form
    approves): they join the answers when it is submitted."""

    title: str
    submit: str
    fields: Sequence[FormField]
    fixed: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The handler's view of the request


class Progress(Protocol):
    async def __call__(self, done: int, total: int, label: str) -> None: ...


class Notify(Protocol):
    async def __call__(self, text: str) -> None: ...


class History(Protocol):
    """Figures kept between runs (report history), stored by the bot."""

    async def record(self, kind: str, data: Mapping[str, Any]) -> None: ...

    async def recent(self, kind: str, limit: int) -> list[tuple[datetime, dict[str, Any]]]:
        """The newest `limit` records of `kind`, oldest first."""
        ...


class MemoryHistory:
    """History kept in memory (tests, and anywhere without a store)."""

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or _utcnow
        self.items: list[tuple[str, datetime, dict[str, Any]]] = []

    async def record(self, kind: str, data: Mapping[str, Any]) -> None:
        self.items.append((kind, self.clock(), dict(data)))

    async def recent(self, kind: str, limit: int) -> list[tuple[datetime, dict[str, Any]]]:
        mine = [(at, data) for k, at, data in self.items if k == kind]
        return mine[-limit:]


async def _no_progress(done: int, total: int, label: str) -> None:
    return None


async def _no_notify(text: str) -> None:
    return None


def _utcnow() -> datetime:
    return datetime.now(ZoneInfo("UTC"))


@dataclass(frozen=True, kw_only=True)
class Context:
    """Who asked, where, and how to talk back while the work goes on."""

    user_id: str
    channel_id: str
    tz: ZoneInfo = ZoneInfo("UTC")
    clock: Callable[[], datetime] = _utcnow
    progress: Progress = _no_progress
    notify: Notify = _no_notify
    approval_id: int | None = None
    history: History = field(default_factory=MemoryHistory)
    # A scheduled run's time: it may start earlier (its kind's `lead`) and posts then, so it
    # reports as of this moment rather than the one it started at.
    due: datetime | None = None

    def now(self) -> datetime:
        return self.clock().astimezone(self.tz)

    def today(self) -> date:
        return self.now().date()


# ---------------------------------------------------------------------------------------------
# Declarations

A = TypeVar("A", bound=Args)
C = TypeVar("C")
S = TypeVar("S", bound=BaseSettings)

Handler = Callable[[C, A, Context], Awaitable[Reply]]


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """What a provider read shows about a write whose outcome is unknown: the facts found, in a
    sentence or two, and what they suggest (`done`, `not done`, or `unclear`)."""

    text: str
    verdict: Literal["done", "not done", "unclear"]


@dataclass(frozen=True, kw_only=True)
class Command(Generic[A, C]):
    """One command, declared next to its handler. Drives parsing, help, forms and approvals.

    `idempotent=False` marks calls that change something at the provider: they are never
    retried, and a timeout during them ends as "outcome unknown". `unknown_hint` tells people
    what to check then, and `check_outcome` checks it for them.

    `resolve` makes relative inputs concrete when an approval is requested (`last-month`, a
    default reseller, `accounts=all`): it returns the arguments exactly as they will be sent,
    so the card shows them and the run, whenever it is approved, sends the same. It may read
    from the provider, and raises `CommandError` for input it cannot resolve.

    `read_only=True` marks commands that only read (a balance, a list, a PDF that exists):
    they may be posted on a schedule (`/billing schedule add post`). It is declared, not
    inferred: `idempotent` alone is not enough, since a repeatable call may still write
    (`sequence set-current`, `confirm-email`). A read-only command is idempotent and needs
    no approval; the declaration refuses anything else.

    `step=True` offers the command as a Workflow Builder step (its `Args` fields as inputs);
    `outputs` names the figures its reply carries (`Reply.figures`), each with a title, as
    the step's outputs beside the reply's text (and `file_permalink`, when declared, for the
    file it posts).
    """

    slash: str
    words: tuple[str, ...]
    summary: str
    args: type[A]
    handler: Handler[C, A]
    role: Role
    approval: bool = False
    idempotent: bool = True
    read_only: bool = False
    form: Form | None = None
    example: str | None = None
    unknown_hint: Callable[[A], Reply] | None = None
    describe: Callable[[A], str] | None = None
    resolve: Callable[[C, A, Context], Awaitable[A]] | None = None
    # For a write: the provider read that shows whether it happened (the "Check now" button of
    # an unknown outcome). It reads only, and may run any number of times.
    check_outcome: Callable[[C, A, Context], Awaitable[Evidence]] | None = None
    step: bool = False
    outputs: Sequence[tuple[str, str]] = ()

    def __post_init__(self) -> None:
        if self.read_only and (self.approval or not self.idempotent):
            raise ValueError(f"/{self.path}: a read-only command is idempotent, with no approval")
        if self.outputs and not self.step:
            raise ValueError(f"/{self.path}: outputs are a step's; declare step=True")

    @property
    def path(self) -> str:
        return " ".join((self.slash, *self.words))

    @property
    def audit_name(self) -> str:
        return f"/{self.path}"


@dataclass(frozen=True, kw_only=True)
class Provider(Generic[S, C]):
    """A provider package's single export: settings, client factory, sandbox and commands.

    `open_client` builds the typed client over an httpx client whose base URL and auth the
    provider sets; `sandbox` returns (settings that point at the sandbox, its ASGI app).
    `check` performs the provider's cheapest read and returns a one-line summary.
    """

    name: str
    title: str
    settings: Callable[[], S]
    configured: Callable[[S], bool]
    open_client: Callable[[S, httpx.AsyncBaseTransport | None], C]
    sandbox: Callable[[], tuple[S, Sandbox]]
    commands: Sequence[Command[Any, C]]
    check: Callable[[C], Awaitable[str]]
    schedule_kinds: Mapping[str, ScheduleKind[Any, C]] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ScheduleKind(Generic[A, C]):
    """A recurring job a provider offers to `/billing schedule add <name>`.

    `lead`: how long before its time a run must start to be ready then (a report that waits
    for a request budget); the scheduler starts it that much earlier and the bot posts its
    reply at the time itself. None: runs start at their time.
    """

    name: str
    summary: str
    args: type[A]
    run: Handler[C, A]
    lead: Callable[[C, A], Lead] | None = None


@dataclass(frozen=True, kw_only=True)
class Lead:
    """How long before its time a scheduled run starts, and a sentence saying why."""

    span: timedelta
    reason: str


def duration_words(span: timedelta) -> str:
    """`1 h 05 min`, `40 min`; never under a minute. Five lines are not worth a dependency
    (humanize's `precisedelta` writes "1 hour and 5 minutes", longer than a note wants)."""
    minutes = max(1, -(-int(span.total_seconds()) // 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
