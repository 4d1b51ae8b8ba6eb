"""`/smsc`: create a sub-client invoice, download invoice and act PDFs."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from commands import grammar
from commands.base import Args, Button, Command, Context, File, Provider, Reply, Role
from commands.money import exact
from commands.secrets import MASK
from commands.smsc import client as api
from commands.smsc.client import SmscClient
from commands.smsc.models import SubClient, user_label
from commands.smsc.queue import SPACING
from commands.smsc.sandbox import (
    SANDBOX_BASE_URL,
    SANDBOX_LOGIN,
    SANDBOX_PASSWORD,
    SmscSandbox,
)
from commands.types import Label, Money, PositiveInt

SLASH = "smsc"


class SmscSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSC_", extra="ignore")

    login: str | None = Field(None, description="client login", examples=["your-login"])
    password: SecretStr | None = Field(
        None, description="client password", examples=["your-password"]
    )
    base_url: str = Field(
        api.DEFAULT_BASE_URL,
        description=(
            "`https://smsc.ru`, `https://smscentre.com`, `https://smsc.kz` or `https://smsc.ua`"
        ),
    )
    # Seconds between the end of one document request and the start of the next. SMSC's rule is
    # one a minute (error 9): leave the default; tests of several replicas shorten it.
    document_spacing: float = Field(
        SPACING,
        ge=0.1,
        le=3600,
        description=(
            "seconds between document requests; SMSC allows one a minute per login, so leave it"
        ),
    )


# --- arguments -------------------------------------------------------------------------------

USER_HELP = "sub-client login, or id:<n> for its ID"
# Help reads the label from the field itself, not from inside `| None`.
OptionalNumber = Annotated[PositiveInt | None, Label("number")]


class CreateInvoice(Args):
    positional = ("user", "sum")
    user: SubClient = Field(description=USER_HELP, examples=["acme"])
    sum: Money = Field(description="amount in the account's currency", examples=["1500.00"])
    service: str | None = Field(
        None,
        description="service name printed on the invoice",
        examples=["SMS package"],
        min_length=1,
        max_length=200,
    )


class GetInvoice(Args):
    positional = ("user", "id")
    user: SubClient = Field(description=USER_HELP, examples=["acme"])
    id: PositiveInt = Field(description="invoice ID", examples=[501])


class GetAct(Args):
    positional = ("user", "id")
    user: SubClient = Field(description=USER_HELP, examples=["acme"])
    id: OptionalNumber = Field(None, description="act ID (or give num=)", examples=[701])
    num: OptionalNumber = Field(None, description="act number (instead of the ID)")

    @model_validator(mode="after")
    def _id_or_num(self) -> GetAct:
        if self.id is not None and self.num is not None:
            raise ValueError("give the act's ID or its number (num=<n>), not both")
        if self.id is None and self.num is None:
            raise ValueError("give the act's ID, or its number as num=<n>")
        return self


# --- handlers --------------------------------------------------------------------------------


async def create_invoice(client: SmscClient, args: CreateInvoice, ctx: Context) -> Reply:
    created = await client.create_invoice(
        args.user, args.sum, service=args.service, notify=ctx.notify
    )
    service = f", service “{args.service}”" if args.service else ""
    asked = "" if created.sum == args.sum else f" (asked for {exact(args.sum, decimals=2)})"
    summary = (
        f"SMSC invoice {created.id} created for {user_label(args.user)}: "
        f"{exact(created.sum, decimals=2)}{asked}{service}."
    )
    if created.pdf is None:
        download = grammar.line(f"{SLASH} invoice get", user=args.user, id=created.id)
        return Reply(
            text=f"{summary} Its PDF could not be used ({created.pdf_problem}); "
            f"download it with `{download}`.",
            buttons=[Button(label="Download the PDF", command=download)],
            figures={"invoice_id": str(created.id), "sum": exact(created.sum)},
        )
    return Reply(
        text=summary,
        figures={"invoice_id": str(created.id), "sum": exact(created.sum)},
        files=[
            File(
                filename=f"smsc-invoice-{created.id}.pdf",
                content=created.pdf,
                title=f"SMSC invoice {created.id} ({user_label(args.user)})",
            )
        ],
    )


async def get_invoice(client: SmscClient, args: GetInvoice, ctx: Context) -> Reply:
    pdf = await client.invoice_pdf(args.user, args.id, notify=ctx.notify)
    title = f"SMSC invoice {args.id} ({user_label(args.user)})"
    return Reply(
        text=f"{title}, {size(pdf)}.",
        files=[File(filename=f"smsc-invoice-{args.id}.pdf", content=pdf, title=title)],
        figures={"invoice_id": str(args.id)},
    )


async def get_act(client: SmscClient, args: GetAct, ctx: Context) -> Reply:
    pdf = await client.act_pdf(args.user, act_id=args.id, num=args.num, notify=ctx.notify)
    if args.id is not None:
        title, name = f"SMSC act {args.id}", f"smsc-act-{args.id}.pdf"
    else:
        title, name = f"SMSC act number {args.num}", f"smsc-act-{args.num}.pdf"
    title = f"{title} ({user_label(args.user)})"
    return Reply(
        text=f"{title}, {size(pdf)}.", files=[File(filename=name, content=pdf, title=title)]
    )


def size(content: bytes) -> str:
    if len(content) < 1024:
        return f"{len(content)} B PDF"
    return f"{len(content) / 1024:.0f} KB PDF"


def _describe_create(args: CreateInvoice) -> str:
    params = api.document_params(
        api.CREATE_INVOICE, args.user, sum=api.money(args.sum), service=args.service
    )
    query = urlencode(params, quote_via=quote)
    service = f"service “{args.service}”" if args.service else "no service name"
    return (
        f"Create an SMSC invoice for *{user_label(args.user)}*: *{api.money(args.sum)}*, "
        f"{service}. SMSC answers with the invoice PDF, posted here.\n"
        f"`GET <SMSC_BASE_URL>{api.DOCUMENTS}?login=<SMSC_LOGIN>&psw={MASK}&{query}`"
    )


def _unknown_create(args: CreateInvoice) -> Reply:
    return Reply(
        text=(
            f"The invoice request for {user_label(args.user)} ({api.money(args.sum)}) reached "
            "SMSC but its answer was lost, so the invoice may or may not exist. Check the "
            "sub-client's invoices in the SMSC account before asking again."
        )
    )


COMMANDS: list[Command[Any, SmscClient]] = [
    Command(
        slash=SLASH,
        words=("invoice", "create"),
        summary="create an invoice for a sub-client and post its PDF",
        args=CreateInvoice,
        handler=create_invoice,
        role=Role.OPERATOR,
        approval=True,
        idempotent=False,
        example='/smsc invoice create acme 1500.00 service="SMS package"',
        describe=_describe_create,
        unknown_hint=_unknown_create,
        step=True,
        outputs=(
            ("invoice_id", "Invoice ID"),
            ("sum", "Invoice amount, as SMSC sent it"),
            ("file_permalink", "Link to the invoice PDF"),
        ),
    ),
    Command(
        slash=SLASH,
        words=("invoice", "get"),
        summary="post the PDF of a sub-client's invoice",
        args=GetInvoice,
        handler=get_invoice,
        role=Role.VIEWER,
        read_only=True,
        example="/smsc invoice get acme 501",
        step=True,
        outputs=(("invoice_id", "Invoice ID"), ("file_permalink", "Link to the invoice PDF")),
    ),
    Command(
        slash=SLASH,
        words=("act", "get"),
        summary="post the PDF of a sub-client's act, by ID or by num=<number>",
        args=GetAct,
        handler=get_act,
        role=Role.VIEWER,
        read_only=True,
        example="/smsc act get acme num=7",
    ),
]


def _configured(settings: SmscSettings) -> bool:
    return bool(settings.login) and settings.password is not None


def _open(settings: SmscSettings, transport: httpx.AsyncBaseTransport | None) -> SmscClient:
    assert settings.login is not None and settings.password is not None
    return SmscClient.open(
        base_url=settings.base_url,
        login=settings.login,
        password=settings.password.get_secret_value(),
        transport=transport,
        spacing=settings.document_spacing,
    )


def _sandbox() -> tuple[SmscSettings, SmscSandbox]:
    settings = SmscSettings(
        login=SANDBOX_LOGIN, password=SecretStr(SANDBOX_PASSWORD), base_url=SANDBOX_BASE_URL
    )
    return settings, SmscSandbox()


async def _check(client: SmscClient) -> str:
    # SMSC offers no free read: every documents.php call is a document request under the
    # one-a-minute rule. Asking for an invoice that cannot exist is the cheapest proof that the
    # login, password and source IP are accepted (error 6 or 7 means yes, error 2 means no). It
    # waits in the client's queue like any other document request and uses that minute.
    return await client.verify_credentials()


PROVIDER = Provider(
    name=SLASH,
    title="SMSC",
    settings=SmscSettings,
    configured=_configured,
    open_client=_open,
    sandbox=_sandbox,
    commands=COMMANDS,
    check=_check,
)
