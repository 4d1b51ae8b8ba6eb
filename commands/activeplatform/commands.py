"""`/activeplatform`: reseller accounts and notifications on closing documents for a period."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Final, Literal

import httpx
from pydantic import BeforeValidator, Field, PlainSerializer, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from commands import grammar
from commands.activeplatform import client as api
from commands.activeplatform.client import ActivePlatformClient
from commands.activeplatform.models import Account, ClosingRun
from commands.activeplatform.sandbox import (
    SANDBOX_BASE_URL,
    SANDBOX_RESELLER,
    SANDBOX_TOKEN,
    ActivePlatformSandbox,
)
from commands.base import (
    Args,
    Button,
    Command,
    CommandError,
    Context,
    Proposal,
    Provider,
    Reply,
    Role,
    ScheduleKind,
    Table,
)
from commands.types import (
    Digits,
    Label,
    Period,
    PeriodText,
    PositiveInt,
    id_list,
    parse_period,
)
from commands.words import plural

SLASH = "activeplatform"
ALL: Final = "all"
SHOWN_ROWS = 40
SHOWN_IDS = 50
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


class ActivePlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTIVEPLATFORM_", extra="ignore")

    base_url: str | None = Field(
        None, description="installation URL", examples=["https://cp.your-installation.com"]
    )
    api_token: SecretStr | None = Field(
        None, description="manager API token", examples=["your-manager-token"]
    )
    reseller_id: Digits | None = Field(None, description="default reseller", examples=["1"])
    chunk_size: int = Field(
        api.DEFAULT_CHUNK_SIZE, ge=1, le=1000, description="accounts per notification request"
    )
    page_size: int = Field(
        api.DEFAULT_PAGE_SIZE,
        ge=1,
        le=1000,
        description=(
            "accounts asked per page when listing (ActivePlatform's documented default; pages "
            "are read until an empty one, however many a page holds)"
        ),
    )


# --- argument types --------------------------------------------------------------------------


def account_selection(value: Any) -> tuple[str, ...] | str:
    if isinstance(value, str) and value.strip().lower() == ALL:
        return ALL
    try:
        return id_list(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; give account ids like 2003421,2003565, or `all`") from None


def email_filter(value: Any) -> str:
    addresses = [part.strip() for part in str(value).split(",") if part.strip()]
    bad = [a for a in addresses if not EMAIL.match(a)]
    if not addresses or bad:
        shown = ", ".join(bad) or "(empty)"
        raise ValueError(f"{shown} is not an e-mail address (like billing@example.com)")
    return ",".join(addresses)


# Account ids (the list of a typed command) or every account of the reseller.
AccountSelection = Annotated[
    tuple[str, ...] | Literal["all"],
    BeforeValidator(account_selection),
    Label("id,id,…|all"),
    PlainSerializer(lambda v: v if isinstance(v, str) else ",".join(v)),
]
EmailFilter = Annotated[str, BeforeValidator(email_filter), Label("e-mail")]
# Optional values carry their help word outside the `| None`, where help looks for it.
OptionalReseller = Annotated[Digits | None, Label("number")]
OptionalEmail = Annotated[EmailFilter | None, Label("e-mail")]


# --- arguments -------------------------------------------------------------------------------


class ListAccounts(Args):
    reseller: OptionalReseller = Field(
        None, description="reseller id (default: ACTIVEPLATFORM_RESELLER_ID)", examples=["1"]
    )
    email: OptionalEmail = Field(
        None,
        description="only accounts with this contact e-mail (a comma-separated list works)",
        examples=["billing@acme.example"],
    )
    page: PositiveInt = Field(
        1, description=f"which page of {SHOWN_ROWS} accounts to show", examples=[2]
    )


class NotifyClosing(Args):
    positional = ("period",)
    period: PeriodText = Field(
        description="billing period of the closing documents", examples=["2026-10"]
    )
    accounts: AccountSelection = Field(
        ALL, description="account ids, or `all` accounts of the reseller", examples=["all"]
    )
    reseller: OptionalReseller = Field(
        None, description="reseller id (default: ACTIVEPLATFORM_RESELLER_ID)", examples=["1"]
    )


class ClosingReminder(Args):
    accounts: AccountSelection = Field(
        ALL, description="account ids, or `all` accounts of the reseller", examples=["all"]
    )
    reseller: OptionalReseller = Field(
        None, description="reseller id (default: ACTIVEPLATFORM_RESELLER_ID)", examples=["1"]
    )


# --- helpers ---------------------------------------------------------------------------------


def reseller_for(client: ActivePlatformClient, given: str | None) -> str:
    reseller = given or client.default_reseller
    if reseller is None:
        raise CommandError(
            "No reseller given: add `reseller=<id>` or set ACTIVEPLATFORM_RESELLER_ID."
        )
    return reseller


def period_for(text: str, ctx: Context) -> Period:
    try:
        return parse_period(text, today=ctx.today())
    except ValueError as exc:
        raise CommandError(f"Cannot notify for that period: {exc}.") from None


def period_words(period: Period) -> str:
    """A period as the grammar reads it back: `2026-10` for a whole month, else its two dates."""
    if period.label != str(period):
        return f"{period.start:%Y-%m}"
    return str(period)


def retry_command(period: Period, account_ids: tuple[str, ...], reseller: str) -> str:
    return grammar.line(
        f"{SLASH} notify-closing", period=period, accounts=account_ids, reseller=reseller
    )


def accounts_command(args: ListAccounts, page: int) -> str:
    """The command that shows another page of the same list (a button's command)."""
    parts = [f"/{SLASH} accounts"]
    parts += [f"reseller={args.reseller}"] if args.reseller else []
    parts += [f"email={args.email}"] if args.email else []
    return " ".join([*parts, f"page={page}"])


def account_table(accounts: list[Account]) -> Table:
    rows = [[a.id, a.name, a.email, a.status] for a in accounts]
    return Table(columns=["ID", "Name", "E-mail", "Status"], rows=rows)


# --- handlers --------------------------------------------------------------------------------


async def list_accounts(client: ActivePlatformClient, args: ListAccounts, ctx: Context) -> Reply:
    reseller = reseller_for(client, args.reseller)
    accounts = await client.accounts(reseller, email=args.email)
    which = f"reseller {reseller}" + (f" with e-mail {args.email}" if args.email else "")
    if not accounts:
        return Reply(text=f"No accounts of {which}.")
    pages = -(-len(accounts) // SHOWN_ROWS)
    if args.page > pages:
        raise CommandError(
            f"There is no page {args.page}: the {plural(len(accounts), 'account')} of {which} "
            f"fill {plural(pages, 'page')} of {SHOWN_ROWS}."
        )
    first = (args.page - 1) * SHOWN_ROWS
    shown = accounts[first : first + SHOWN_ROWS]
    if pages == 1:
        return Reply(
            text=f"*{plural(len(accounts), 'account')}* of {which}", table=account_table(shown)
        )
    buttons = []
    if args.page > 1:
        buttons.append(Button(label="Previous page", command=accounts_command(args, args.page - 1)))
    if args.page < pages:
        buttons.append(Button(label="Next page", command=accounts_command(args, args.page + 1)))
    return Reply(
        text=(
            f"*{plural(len(accounts), 'account')}* of {which}: page {args.page} of {pages} "
            f"(accounts {first + 1}–{first + len(shown)}; add `page=<n>` for another)"
        ),
        table=account_table(shown),
        buttons=buttons,
    )


async def resolve_notify(
    client: ActivePlatformClient, args: NotifyClosing, ctx: Context
) -> NotifyClosing:
    """What the approval card shows and the run sends, fixed when it is requested: the period's
    dates (`last-month` as of today), the reseller (the default one named), and the accounts
    (`all` listed now, every page). Approved after midnight, it still notifies the same month
    and the same accounts; accounts added later are not among them."""
    period = period_for(args.period, ctx)  # checked before anything is read
    reseller = reseller_for(client, args.reseller)
    if isinstance(args.accounts, str):
        account_ids = tuple(a.id for a in await client.accounts(reseller))
    else:
        account_ids = args.accounts
    if not account_ids:
        raise CommandError(f"Reseller {reseller} has no accounts to notify.")
    try:
        return NotifyClosing(period=period_words(period), accounts=account_ids, reseller=reseller)
    except ValidationError as exc:  # ids ActivePlatform listed that the grammar cannot hold
        why = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise CommandError(
            f"Reseller {reseller}'s accounts cannot be stored for approval ({why})"
        ) from None


async def notify_closing(client: ActivePlatformClient, args: NotifyClosing, ctx: Context) -> Reply:
    period = period_for(args.period, ctx)
    reseller = reseller_for(client, args.reseller)
    if isinstance(args.accounts, str):
        account_ids = tuple(a.id for a in await client.accounts(reseller))
    else:
        account_ids = args.accounts
    if not account_ids:
        raise CommandError(f"Reseller {reseller} has no accounts to notify.")
    run = await client.notify_closing_in_chunks(
        reseller, account_ids, period.start, period.end, progress=ctx.progress
    )
    return closing_reply(run, period, reseller)


def closing_reply(run: ClosingRun, period: Period, reseller: str) -> Reply:
    fields = [
        ("Period", str(period)),
        ("Reseller", reseller),
        ("Accounts notified", f"{len(run.delivered_ids)} of {run.total}"),
        ("Chunks", str(len(run.outcomes))),
    ]
    figures = {
        "period": str(period),
        "reseller": reseller,
        "accounts_notified": str(len(run.delivered_ids)),
        "accounts_total": str(run.total),
        "chunks_failed": str(len(run.failed)),
    }
    if not run.failed:
        return Reply(
            text=(
                f"Closing-document notifications sent for *{period.label}*: "
                f"{plural(run.total, 'account')} of reseller {reseller}."
            ),
            sections=["To check delivery, see the notifications log in ActivePlatform."],
            fields=fields,
            figures=figures,
        )
    failed = [
        f"Chunk {o.number} ({plural(len(o.account_ids), 'account')}, {o.span}): {o.error}"
        for o in run.failed
    ]
    retry = run.failed_ids
    return Reply(
        text=(
            f"Closing-document notifications for *{period.label}*: "
            f"{len(run.delivered_ids)} of {plural(run.total, 'account')} notified; "
            f"{len(run.failed)} of {plural(len(run.outcomes), 'chunk')} failed."
        ),
        sections=failed,
        fields=fields,
        figures=figures,
        buttons=[
            Button(
                label=f"Retry the {len(retry)} failed accounts",
                command=retry_command(period, retry, reseller),
                style="primary",
            )
        ],
    )


def _describe_notify(args: NotifyClosing) -> str:
    if isinstance(args.accounts, str):  # not resolved (a request made before `resolve`)
        selection = "every account of the reseller (listed, all pages, when approved)"
        ids_json = "[…every account id…]"
    else:
        ids = args.accounts
        listing = grammar.line(f"{SLASH} accounts", reseller=args.reseller)
        selection = (
            f"{plural(len(ids), 'account')}, exactly these (fixed when this was requested; "
            "accounts added later are not notified)"
        )
        if len(ids) > SHOWN_IDS:
            selection += (
                f". The first {SHOWN_IDS} are below; all {len(ids)} are in this request's "
                f"command (`/billing approvals`), and `{listing}` lists the reseller's accounts"
            )
        ids_json = "[" + ",".join(ids[:SHOWN_IDS])
        ids_json += f",… {len(ids) - SHOWN_IDS} more]" if len(ids) > SHOWN_IDS else "]"
    start, end, hint = _period_dates(args.period)
    body = f'{{"account_ids":{ids_json},"start_date":"{start}","end_date":"{end}"}}'
    path = api.NOTIFY_CLOSING.format(reseller=args.reseller or "<ACTIVEPLATFORM_RESELLER_ID>")
    return (
        f"Send closing-document notifications for *{args.period}* ({hint})\n"
        f"Reseller: {args.reseller or 'the default (ACTIVEPLATFORM_RESELLER_ID)'}\n"
        f"Accounts: {selection}\n"
        f"`POST {path}` `{body}`, in chunks of ACTIVEPLATFORM_CHUNK_SIZE accounts"
    )


def _period_dates(text: str) -> tuple[str, str, str]:
    """Start, end and a hint; `last-month` depends on the day it runs, so it stays symbolic."""
    if text.strip().lower() == "last-month":
        return "<first day>", "<last day>", "the month before the day it is approved"
    period = parse_period(text, today=date.max)
    return period.start.isoformat(), period.end.isoformat(), str(period)


def _unknown_notify(args: NotifyClosing) -> Reply:
    return Reply(
        text=(
            f"Check ActivePlatform's notifications log for {args.period} before sending again: "
            "a request reached ActivePlatform but its answer was lost, so those accounts may "
            "have been notified already."
        ),
        buttons=[
            Button(
                label="List accounts",
                command=grammar.line(f"{SLASH} accounts", reseller=args.reseller),
            )
        ],
    )


# --- scheduled reminder ----------------------------------------------------------------------


async def closing_reminder(
    client: ActivePlatformClient, args: ClosingReminder, ctx: Context
) -> Reply:
    period = Period.last_month(ctx.today())
    reseller = reseller_for(client, args.reseller)
    if isinstance(args.accounts, str):
        account_ids = tuple(a.id for a in await client.accounts(reseller))
    else:
        account_ids = args.accounts
    count = len(dict.fromkeys(account_ids))
    text = (
        f"Closing documents for {period.label}: {plural(count, 'account')} of reseller {reseller}"
    )
    fields = [("Period", str(period)), ("Reseller", reseller)]
    if count == 0:
        return Reply(text=text, fields=fields)
    # Proposed as it will be sent: the month, the reseller and the accounts listed now.
    command = grammar.line(
        f"{SLASH} notify-closing",
        period=period_words(period),
        accounts=account_ids,
        reseller=reseller,
    )
    return Reply(
        text=text,
        fields=fields,
        proposal=Proposal(
            command=command,
            approve_label="Send notifications",
            reject_label="Skip",
            snooze_hours=24,
        ),
    )


COMMANDS: list[Command[Any, ActivePlatformClient]] = [
    Command(
        slash=SLASH,
        words=("accounts",),
        summary="list a reseller's accounts",
        args=ListAccounts,
        handler=list_accounts,
        role=Role.VIEWER,
        read_only=True,
        example="/activeplatform accounts reseller=1",
    ),
    Command(
        slash=SLASH,
        words=("notify-closing",),
        summary="notify accounts about their closing documents for a billing period",
        args=NotifyClosing,
        handler=notify_closing,
        role=Role.OPERATOR,
        approval=True,
        idempotent=False,
        example="/activeplatform notify-closing last-month accounts=all",
        describe=_describe_notify,
        unknown_hint=_unknown_notify,
        resolve=resolve_notify,
        step=True,
        outputs=(
            ("period", "Billing period notified"),
            ("reseller", "Reseller"),
            ("accounts_notified", "Accounts notified"),
            ("accounts_total", "Accounts asked"),
            ("chunks_failed", "Chunks that failed"),
        ),
    ),
]

SCHEDULE_KINDS: dict[str, ScheduleKind[Any, ActivePlatformClient]] = {
    "closing-reminder": ScheduleKind(
        name="closing-reminder",
        summary="monthly reminder to send closing-document notifications for the previous month",
        args=ClosingReminder,
        run=closing_reminder,
    )
}


def _configured(settings: ActivePlatformSettings) -> bool:
    return settings.api_token is not None and bool(settings.base_url)


def _open(
    settings: ActivePlatformSettings, transport: httpx.AsyncBaseTransport | None
) -> ActivePlatformClient:
    assert settings.api_token is not None and settings.base_url is not None
    return ActivePlatformClient.open(
        base_url=settings.base_url,
        api_token=settings.api_token.get_secret_value(),
        default_reseller=settings.reseller_id,
        page_size=settings.page_size,
        chunk_size=settings.chunk_size,
        transport=transport,
    )


def _sandbox() -> tuple[ActivePlatformSettings, ActivePlatformSandbox]:
    settings = ActivePlatformSettings(
        base_url=SANDBOX_BASE_URL,
        api_token=SecretStr(SANDBOX_TOKEN),
        reseller_id=SANDBOX_RESELLER,
    )
    return settings, ActivePlatformSandbox()


async def _check(client: ActivePlatformClient) -> str:
    reseller = client.default_reseller
    if reseller is None:
        return "configured; set ACTIVEPLATFORM_RESELLER_ID to have a reseller to read"
    page = await client.accounts_page(reseller, number=1, size=1)
    total = page.meta.total_count if page.meta else None
    count = f", {plural(total, 'account')}" if total is not None else ""
    return f"reseller {reseller} reachable{count}"


PROVIDER = Provider(
    name=SLASH,
    title="ActivePlatform",
    settings=ActivePlatformSettings,
    configured=_configured,
    open_client=_open,
    sandbox=_sandbox,
    commands=COMMANDS,
    check=_check,
    schedule_kinds=SCHEDULE_KINDS,
)
