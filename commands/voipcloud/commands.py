"""`/voipcloud`: customer and partner balances, moving funds, and customer accounts; and
`/billing report balances` with its `balance-report` schedule (the report itself: report.py)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import httpx
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from commands import grammar, money
from commands.base import (
    Args,
    Button,
    Command,
    CommandError,
    Context,
    Evidence,
    Form,
    FormField,
    Lead,
    Provider,
    Reply,
    Role,
    ScheduleKind,
    Table,
)
from commands.types import MONEY_DECIMALS, IsoDate, Label, Period, SignedMoney, id_list
from commands.voipcloud import client as api
from commands.voipcloud import report
from commands.voipcloud.budget import DEFAULT_RATE_LIMIT, RateLimit
from commands.voipcloud.client import Paths, VoipcloudClient
from commands.voipcloud.models import STATEMENT_LINES, Statement
from commands.voipcloud.sandbox import (
    CONSOLE_POPULATION,
    SANDBOX_BASE_URL,
    SANDBOX_GOOGLE_CAPTCHA,
    SANDBOX_TOKEN,
    VoipcloudSandbox,
)
from commands.words import adds_to

SLASH = "voipcloud"
BILLING = "billing"
DESCRIPTION_LIMIT = 255
REPORT_LIMIT = 1000  # accounts in one report: at the default budget, about 2.5 hours of reads
NAME_LIMIT = 100

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
PHONE_SEPARATORS = re.compile(r"[\s().-]")


def _rate_limit(value: Any) -> RateLimit | None:
    if value is None or isinstance(value, RateLimit):
        return value
    return RateLimit.parse(str(value))


class VoipcloudSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOIPCLOUD_", extra="ignore")

    base_url: str | None = Field(
        None,
        description="partner-portal API base",
        examples=["https://au.voipcloud.online/api/integration/v2"],
    )
    token: SecretStr | None = Field(
        None, description="partner-portal API key", examples=["your-api-key"]
    )
    google_captcha: SecretStr | None = Field(
        None, description="sent as `google_captcha` on POST methods", examples=[""]
    )
    rate_limit: Annotated[RateLimit | None, NoDecode, BeforeValidator(_rate_limit)] = Field(
        DEFAULT_RATE_LIMIT,
        description=(
            "request budget shared by commands and reports: requests/window such as `100/15m` or "
            "`10/1m`; `off` disables it"
        ),
        examples=["100/15m"],
    )
    path_customer_balance: str = Field(
        api.CUSTOMER_BALANCE, description="path of a customer's balance (`balance`)"
    )
    path_partner_balance: str = Field(
        api.PARTNER_BALANCE, description="path of the partner's balance (`partner-balance`)"
    )
    path_move_funds: str = Field(api.MOVE_FUNDS, description="path of a transfer (`move-funds`)")
    path_register_customer: str = Field(
        api.REGISTER_CUSTOMER, description="path of a customer registration (`register`)"
    )
    path_confirm_email: str = Field(
        api.CONFIRM_EMAIL, description="path of an e-mail confirmation (`confirm-email`)"
    )
    path_login_customer: str = Field(
        api.LOGIN_CUSTOMER, description="path of a one-time login URL (`login-url`)"
    )
    path_reset_password: str = Field(
        api.RESET_PASSWORD, description="path of a password reset (`reset-password`)"
    )

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not re.match(r"^https?://\S+$", value.strip()):
            raise ValueError("must be an http(s) URL such as https://au.voipcloud.online/api/...")
        return value.strip()

    @field_validator("token", "google_captcha")
    @classmethod
    def _blank_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator(
        "path_customer_balance",
        "path_partner_balance",
        "path_move_funds",
        "path_register_customer",
        "path_confirm_email",
        "path_login_customer",
        "path_reset_password",
    )
    @classmethod
    def _path(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
            raise ValueError(f"'{value}' is not a path such as /move-funds")
        return value

    def paths(self) -> Paths:
        return Paths(**{name: getattr(self, f"path_{name}") for name in Paths.names()})


# --- arguments -------------------------------------------------------------------------------


def account_number(value: Any) -> str:
    raw = str(value).strip()
    if not re.fullmatch(r"\d{1,20}", raw):
        raise ValueError(f"'{raw}' is not an account number (digits only, like 10023)")
    return raw


AccountNumber = Annotated[str, BeforeValidator(account_number), Label("account")]


def account_list(value: Any) -> tuple[str, ...]:
    try:
        accounts = id_list(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; give account numbers like 10023,10024") from None
    if len(accounts) > REPORT_LIMIT:
        raise ValueError(
            f"{len(accounts)} accounts is more than one report reads ({REPORT_LIMIT}); "
            "split them into several reports"
        )
    return accounts


AccountList = Annotated[
    tuple[str, ...],
    BeforeValidator(account_list),
    Label("account,account,…"),
    PlainSerializer(lambda accounts: ",".join(accounts)),
]


class AccountArgs(Args):
    positional = ("account",)
    account: AccountNumber = Field(description="customer account number", examples=["10023"])


def _from_date() -> Any:
    return Field(
        None, description="first day (default: the 1st of to_date's month)", examples=["2025-03-01"]
    )


def _to_date() -> Any:
    return Field(None, description="last day (default: today)", examples=["2025-03-31"])


def _runs_forwards(value: date | None, info: ValidationInfo) -> date | None:
    start = info.data.get("from_date")
    if value is not None and start is not None and value < start:
        raise ValueError(f"{value} is before from_date {start}; the period must run forwards")
    return value


def period_of(from_date: date | None, to_date: date | None, today: date) -> Period:
    """The asked period; by default this month so far, `today` being the team's today."""
    end = to_date or today
    start = from_date or end.replace(day=1)
    if start > end:
        raise CommandError(
            f"from_date {start} is after today ({end}); give to_date as well, or an earlier day."
        )
    return Period(start, end)


class BalanceArgs(Args):
    positional = ("account", "from_date", "to_date")

    account: AccountNumber = Field(description="customer account number", examples=["10023"])
    from_date: IsoDate | None = _from_date()
    to_date: IsoDate | None = _to_date()

    @field_validator("to_date")
    @classmethod
    def _order(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _runs_forwards(value, info)


class PartnerBalanceArgs(Args):
    positional = ("from_date", "to_date")

    from_date: IsoDate | None = _from_date()
    to_date: IsoDate | None = _to_date()

    @field_validator("to_date")
    @classmethod
    def _order(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _runs_forwards(value, info)


def _accounts() -> Any:
    return Field(
        description=f"customer account numbers, comma-separated (at most {REPORT_LIMIT})",
        examples=["10023,10024,10025"],
    )


class ReportBalancesArgs(Args):
    positional = ("from_date", "to_date")

    accounts: AccountList = _accounts()
    from_date: IsoDate | None = _from_date()
    to_date: IsoDate | None = _to_date()

    @field_validator("to_date")
    @classmethod
    def _order(cls, value: date | None, info: ValidationInfo) -> date | None:
        return _runs_forwards(value, info)


class BalanceReportArgs(Args):
    """The `balance-report` schedule: the period follows from the day it runs."""

    accounts: AccountList = _accounts()


class MoveFundsArgs(Args):
    positional = ("account", "amount", "description")
    rest = "description"

    account: AccountNumber = Field(description="customer account number", examples=["10023"])
    amount: SignedMoney = Field(
        description=(
            "at most two decimals, not zero; positive moves partner → customer, "
            "negative moves customer → partner"
        ),
        examples=["50.00"],
    )
    description: str = Field(
        description=f"why the funds move (1–{DESCRIPTION_LIMIT} characters; the rest of the line)",
        examples=["March top-up"],
    )

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        if not value:
            raise ValueError("is required: say why the funds move")
        if len(value) > DESCRIPTION_LIMIT:
            raise ValueError(f"is {len(value)} characters long; the limit is {DESCRIPTION_LIMIT}")
        return value


class RegisterArgs(Args):
    first_name: str = Field(description="customer's first name", examples=["Jane"])
    last_name: str = Field(description="customer's last name", examples=["Citizen"])
    email: str = Field(description="customer's e-mail address", examples=["jane@example.com"])
    phone: str = Field(
        description="international format: +, country code, number", examples=["+61412345678"]
    )
    company: str | None = Field(None, description="company name", examples=["Acme Pty Ltd"])

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("is required")
        if len(value) > NAME_LIMIT:
            raise ValueError(f"is longer than {NAME_LIMIT} characters")
        return value

    @field_validator("company")
    @classmethod
    def _company(cls, value: str | None) -> str | None:
        if value and len(value) > NAME_LIMIT:
            raise ValueError(f"is longer than {NAME_LIMIT} characters")
        return value or None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError(f"'{value}' is not an e-mail address (like jane@example.com)")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        compact = PHONE_SEPARATORS.sub("", value)
        if not PHONE.match(compact):
            raise ValueError(
                f"'{value}' is not in international format: start with + and the country code, "
                "like +61412345678"
            )
        return compact


# --- handlers --------------------------------------------------------------------------------


def statement_table(statement: Statement) -> Table:
    """Every figure as sent, padded to the most decimals among them so the column lines up
    (`242.08793`, `57.00000`, `48.12500`): padding adds zeros, it never rounds."""
    lines = statement.lines()
    if not lines:
        raise CommandError("VoIPcloud answered without any balance figures.")
    amounts = money.column([value for _, value in lines])
    rows = [[label, amount] for (label, _), amount in zip(lines, amounts, strict=True)]
    return Table(columns=["Item", "Amount"], rows=rows, align_right=frozenset({1}))


def _closing(table: Table) -> str:
    closing = [amount for label, amount in table.rows if label == "Closing balance"]
    return f": closing balance *{closing[0]}*" if closing else ""


def statement_figures(statement: Statement) -> dict[str, str]:
    """Each figure sent, by its API name, exactly as sent (a step's outputs)."""
    return {
        name: money.exact(value)
        for name, _ in STATEMENT_LINES
        if (value := getattr(statement, name)) is not None
    }


async def balance(client: VoipcloudClient, args: BalanceArgs, ctx: Context) -> Reply:
    period = period_of(args.from_date, args.to_date, ctx.today())
    statement = await client.customer_balance(args.account, period.start, period.end)
    table = statement_table(statement)
    return Reply(
        text=f"*Customer {args.account}*, {period.label}{_closing(table)}",
        table=table,
        figures=statement_figures(statement),
    )


async def partner_balance(client: VoipcloudClient, args: PartnerBalanceArgs, ctx: Context) -> Reply:
    period = period_of(args.from_date, args.to_date, ctx.today())
    statement = await client.partner_balance(period.start, period.end)
    table = statement_table(statement)
    return Reply(
        text=f"*Partner account*, {period.label}{_closing(table)}",
        table=table,
        figures=statement_figures(statement),
    )


async def report_balances(client: VoipcloudClient, args: ReportBalancesArgs, ctx: Context) -> Reply:
    period = period_of(args.from_date, args.to_date, ctx.today())
    return await report.balance_report(client, args.accounts, period, ctx)


async def scheduled_balance_report(
    client: VoipcloudClient, args: BalanceReportArgs, ctx: Context
) -> Reply:
    # A run starts early (its lead) to post at its time: the period is that of its time, so a
    # report due at 00:30 on the 2nd covers the 1st and 2nd even when it starts on the 1st
    # (which would mean the whole previous month).
    day = ctx.due.astimezone(ctx.tz).date() if ctx.due is not None else ctx.today()
    period = report.scheduled_period(day)
    return await report.balance_report(client, args.accounts, period, ctx)


def scheduled_report_lead(client: VoipcloudClient, args: BalanceReportArgs) -> Lead:
    return report.lead(client, len(args.accounts))


def direction(args: MoveFundsArgs) -> str:
    amount = money.fixed(abs(args.amount), MONEY_DECIMALS)
    if args.amount > 0:
        return f"partner → customer {args.account}: {amount}"
    return f"customer {args.account} → partner: {amount}"


async def move_funds(client: VoipcloudClient, args: MoveFundsArgs, ctx: Context) -> Reply:
    result = await client.move_funds(args.account, args.amount, args.description)
    return Reply(
        text=f"Funds moved, {direction(args)}.",
        fields=[
            ("Customer balance", money.exact(result.customer_balance)),
            ("Credit limit", money.exact(result.customer_credit_limit)),
            ("Description", args.description),
        ],
        figures={
            "customer_balance": money.exact(result.customer_balance),
            "customer_credit_limit": money.exact(result.customer_credit_limit),
        },
        buttons=[
            Button(
                label="Show balance", command=grammar.line(f"{SLASH} balance", account=args.account)
            )
        ],
    )


async def register(client: VoipcloudClient, args: RegisterArgs, ctx: Context) -> Reply:
    registration = await client.register_customer(
        first_name=args.first_name,
        last_name=args.last_name,
        email=args.email,
        phone=args.phone,
        company=args.company,
    )
    number = registration.account_number
    fields = [("Account number", number), ("E-mail", args.email), ("Phone", args.phone)]
    if args.company:
        fields.append(("Company", args.company))
    text = f"Customer *{args.first_name} {args.last_name}* registered as account *{number}*."
    note = registration.message
    return Reply(
        text=text,
        sections=[note] if note and adds_to(note, text) else (),
        fields=fields,
        buttons=[
            Button(
                label="Confirm e-mail",
                command=grammar.line(f"{SLASH} confirm-email", account=number),
            ),
            Button(label="Show balance", command=grammar.line(f"{SLASH} balance", account=number)),
        ],
    )


def _noted(text: str, note: str | None) -> Reply:
    """A result with VoIPcloud's own message beneath it, unless the message only repeats the
    result ("Customer e-mail confirmed." under "E-mail of customer 10223 confirmed.")."""
    return Reply(text=text, sections=[note] if note and adds_to(note, text) else ())


async def confirm_email(client: VoipcloudClient, args: AccountArgs, ctx: Context) -> Reply:
    notice = await client.confirm_email(args.account)
    return _noted(f"E-mail of customer {args.account} confirmed.", notice.message)


async def reset_password(client: VoipcloudClient, args: AccountArgs, ctx: Context) -> Reply:
    notice = await client.reset_password(args.account)
    return _noted(f"Password reset for customer {args.account}.", notice.message)


async def login_url(client: VoipcloudClient, args: AccountArgs, ctx: Context) -> Reply:
    url = await client.login_url(args.account)
    return Reply(
        text=f"One-time login URL for customer {args.account} (only you can see this):\n{url}",
        private=True,
        reveal=True,
        audit_note=f"login URL issued for customer {args.account}",
    )


# --- approvals and lost answers ----------------------------------------------------------------


def _describe_move(args: MoveFundsArgs) -> str:
    amount = money.fixed(args.amount, MONEY_DECIMALS)
    return (
        f"Move funds {direction(args)}\n"
        f"Description: {args.description}\n"
        f"`PUT` move-funds form: account_number={args.account} · amount={amount} · "
        f"description={args.description}"
    )


def _unknown_move(args: MoveFundsArgs) -> Reply:
    return Reply(
        text=(
            f"The transfer ({direction(args)}) reached VoIPcloud but its answer was lost, so it "
            f"may have happened. Check customer {args.account}'s balance before moving funds again."
        ),
        buttons=[
            Button(
                label="Check balance",
                command=grammar.line(f"{SLASH} balance", account=args.account),
            )
        ],
    )


async def _check_move(client: VoipcloudClient, args: MoveFundsArgs, ctx: Context) -> Evidence:
    """Today's payments on the customer's statement (transfers are booked as payments, positive
    to the customer, negative from it) against the amount of the transfer."""
    today = ctx.today()
    statement = await client.customer_balance(args.account, today, today)
    paid = statement.payments if statement.payments is not None else Decimal(0)
    seen = paid >= args.amount if args.amount > 0 else paid <= args.amount
    text = (
        f"Customer {args.account}'s payments today ({today}) come to {money.exact(paid)}; the "
        f"transfer was {money.exact(args.amount)}. "
    )
    if seen:
        return Evidence(text=text + "It looks done.", verdict="done")
    return Evidence(text=text + "It has not been booked.", verdict="not done")


def _unknown_register(args: RegisterArgs) -> Reply:
    return Reply(
        text=(
            f"The registration of {args.email} reached VoIPcloud but its answer was lost. Look "
            "the customer up in the partner portal by e-mail before registering again."
        )
    )


def _unknown_login(args: AccountArgs) -> Reply:
    return Reply(
        text=(
            f"No login URL for customer {args.account} came back. Ask for a new one; "
            "an unused URL does no harm."
        ),
        buttons=[
            Button(
                label="New login URL",
                command=grammar.line(f"{SLASH} login-url", account=args.account),
            )
        ],
        private=True,
    )


def _unknown_reset(args: AccountArgs) -> Reply:
    return Reply(
        text=(
            f"The password reset for customer {args.account} reached VoIPcloud but its answer "
            "was lost: the customer may already have a reset e-mail. Ask them before resetting "
            "again."
        )
    )


REGISTER_FORM = Form(
    title="Register customer",
    submit="Register",
    fields=[
        FormField(name="first_name", label="First name"),
        FormField(name="last_name", label="Last name"),
        FormField(name="email", label="E-mail", kind="email", placeholder="jane@example.com"),
        FormField(
            name="phone",
            label="Phone",
            placeholder="+61412345678",
            hint="International format: +, country code, then the number.",
        ),
        FormField(name="company", label="Company", optional=True),
    ],
)

# A statement's figures as a step's outputs: each one VoIPcloud sent, as sent.
STATEMENT_OUTPUTS = tuple((name, label) for name, label in STATEMENT_LINES)

COMMANDS: list[Command[Any, VoipcloudClient]] = [
    Command(
        slash=SLASH,
        words=("balance",),
        summary="a customer's balance for a period (default: this month so far)",
        args=BalanceArgs,
        handler=balance,
        role=Role.VIEWER,
        read_only=True,
        example="/voipcloud balance 10023 2025-03-01 2025-03-31",
        step=True,
        outputs=STATEMENT_OUTPUTS,
    ),
    Command(
        slash=SLASH,
        words=("partner-balance",),
        summary="the partner account's balance for a period (default: this month so far)",
        args=PartnerBalanceArgs,
        handler=partner_balance,
        role=Role.VIEWER,
        read_only=True,
        example="/voipcloud partner-balance 2025-03-01 2025-03-31",
        step=True,
        outputs=STATEMENT_OUTPUTS,
    ),
    Command(
        slash=SLASH,
        words=("move-funds",),
        summary="move funds between the partner account and a customer (+ to the customer)",
        args=MoveFundsArgs,
        handler=move_funds,
        role=Role.OPERATOR,
        approval=True,
        idempotent=False,
        example="/voipcloud move-funds 10023 50.00 March top-up",
        describe=_describe_move,
        unknown_hint=_unknown_move,
        check_outcome=_check_move,
        step=True,
        outputs=(
            ("customer_balance", "Customer balance after the move"),
            ("customer_credit_limit", "Customer credit limit"),
        ),
    ),
    Command(
        slash=SLASH,
        words=("register",),
        summary="register a new customer",
        args=RegisterArgs,
        handler=register,
        role=Role.OPERATOR,
        idempotent=False,
        form=REGISTER_FORM,
        example=(
            "/voipcloud register first_name=Jane last_name=Citizen email=jane@example.com "
            "phone=+61412345678"
        ),
        unknown_hint=_unknown_register,
    ),
    Command(
        slash=SLASH,
        words=("confirm-email",),
        summary="mark a customer's e-mail address as confirmed",
        args=AccountArgs,
        handler=confirm_email,
        role=Role.OPERATOR,
    ),
    Command(
        slash=SLASH,
        words=("login-url",),
        summary="a one-time URL that logs you in as the customer (shown only to you)",
        args=AccountArgs,
        handler=login_url,
        role=Role.OPERATOR,
        idempotent=False,
        unknown_hint=_unknown_login,
    ),
    Command(
        slash=SLASH,
        words=("reset-password",),
        summary="reset a customer's password (VoIPcloud e-mails them)",
        args=AccountArgs,
        handler=reset_password,
        role=Role.OPERATOR,
        idempotent=False,
        unknown_hint=_unknown_reset,
    ),
    Command(
        slash=BILLING,
        words=("report", "balances"),
        summary=(
            "VoIPcloud balance report for many accounts: totals, biggest movers, accounts below "
            "zero, a chart and (over 30 accounts) a CSV; default period: this month so far"
        ),
        args=ReportBalancesArgs,
        handler=report_balances,
        role=Role.VIEWER,
        read_only=True,
        example="/billing report balances accounts=10023,10024,10025 2026-10-01 2026-10-31",
    ),
]

SCHEDULE_KINDS: dict[str, ScheduleKind[Any, VoipcloudClient]] = {
    report.KIND: ScheduleKind(
        name=report.KIND,
        summary=(
            "recurring VoIPcloud balance report with a chart: this month so far, or the whole "
            "previous month when it runs on the 1st"
        ),
        args=BalanceReportArgs,
        run=scheduled_balance_report,
        lead=scheduled_report_lead,
    )
}


def _configured(settings: VoipcloudSettings) -> bool:
    return settings.base_url is not None and settings.token is not None


def _open(
    settings: VoipcloudSettings, transport: httpx.AsyncBaseTransport | None
) -> VoipcloudClient:
    assert settings.base_url is not None and settings.token is not None
    captcha = settings.google_captcha
    return VoipcloudClient.open(
        base_url=settings.base_url,
        token=settings.token.get_secret_value(),
        google_captcha=captcha.get_secret_value() if captcha is not None else None,
        paths=settings.paths(),
        rate_limit=settings.rate_limit,
        transport=transport,
    )


def _sandbox() -> tuple[VoipcloudSettings, VoipcloudSandbox]:
    # The sandbox has no request budget of its own, so the client needs none either.
    settings = VoipcloudSettings(
        base_url=SANDBOX_BASE_URL,
        token=SecretStr(SANDBOX_TOKEN),
        google_captcha=SecretStr(SANDBOX_GOOGLE_CAPTCHA),
        rate_limit=None,
    )
    return settings, VoipcloudSandbox(population=CONSOLE_POPULATION)


async def _check(client: VoipcloudClient) -> str:
    today = client.budget.clock().date()
    period = Period.month_to_date(today)
    statement = await client.partner_balance(period.start, period.end)
    closing = statement.closing_balance
    shown = money.exact(closing) if closing is not None else "not given"
    return f"partner closing balance {shown} ({period})"


PROVIDER = Provider(
    name=SLASH,
    title="VoIPcloud",
    settings=VoipcloudSettings,
    configured=_configured,
    open_client=_open,
    sandbox=_sandbox,
    commands=COMMANDS,
    check=_check,
    schedule_kinds=SCHEDULE_KINDS,
)
