"""`/invoicexpress`: invoice sequences and the tax authority (AT) communication settings."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from commands import grammar
from commands.base import (
    Args,
    Button,
    Command,
    Context,
    Evidence,
    Form,
    FormField,
    NoArgs,
    Provider,
    Reply,
    Role,
    Table,
)
from commands.invoicexpress import client as api
from commands.invoicexpress.client import InvoiceXpressClient
from commands.invoicexpress.models import NOT_REGISTERED, Sequence
from commands.invoicexpress.sandbox import (
    SANDBOX_API_KEY,
    SANDBOX_BASE_URL,
    SUBUSER,
    InvoiceXpressSandbox,
)
from commands.types import PositiveInt, YesNo
from commands.words import plural

SLASH = "invoicexpress"


class InvoiceXpressSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICEXPRESS_", extra="ignore")

    account: str | None = Field(None, description="account name", examples=["your-account"])
    api_key: SecretStr | None = Field(None, description="API key", examples=["your-api-key"])
    base_url: str | None = Field(
        None,
        description="instead of `https://{account}.app.invoicexpress.com`",
        examples=["https://your-account.app.invoicexpress.com"],
    )


# --- arguments -------------------------------------------------------------------------------


class SequenceId(Args):
    positional = ("id",)
    id: PositiveInt = Field(
        description="sequence id (see `/invoicexpress sequences`)", examples=[42]
    )


class CreateSequence(Args):
    positional = ("serie",)
    serie: str = Field(
        description="series name, as printed on documents", examples=["2027"], max_length=20
    )
    default: YesNo = Field(False, description="make it the default sequence", examples=["yes"])

    @field_validator("serie")
    @classmethod
    def _serie(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if not re.fullmatch(r"[A-Za-z0-9_\-/]+", value):
            raise ValueError("use letters, digits, '-', '_' or '/' only, like 2027 or FT-2027")
        return value


class AtCommunication(Args):
    subuser: str = Field(description="AT sub-user, NIF/number", examples=["123456789/3"])
    password: SecretStr = Field(description="AT sub-user password (sent Base64-encoded)")
    communication_type: Literal["auto", "guides", "manual", "portal_at"] = Field(
        description="how documents are communicated to AT", examples=["auto"]
    )

    @field_validator("subuser")
    @classmethod
    def _subuser(cls, value: str) -> str:
        if not SUBUSER.match(value):
            raise ValueError("must be a 9-digit NIF, a slash and a number, like 123456789/3")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is required")
        return value


# --- handlers --------------------------------------------------------------------------------


def sequence_table(sequences: list[Sequence]) -> Table:
    rows = [
        [
            ("★ " if s.default_sequence else "") + s.serie,
            str(s.id),
            str(s.current_invoice_number),
            s.code_shown,
        ]
        for s in sequences
    ]
    return Table(columns=["Serie", "ID", "Invoice no.", "ATCUD code"], rows=rows)


async def list_sequences(client: InvoiceXpressClient, args: NoArgs, ctx: Context) -> Reply:
    sequences = await client.sequences()
    if not sequences:
        return Reply(text="No sequences yet. Create one with `/invoicexpress sequence create`.")
    buttons = [
        Button(
            label=f"Set {s.serie} as default",
            command=grammar.line(f"{SLASH} sequence set-current", id=s.id),
        )
        for s in sequences
        if not s.default_sequence
    ]
    return Reply(
        text=(
            f"*{plural(len(sequences), 'invoice sequence')}* (★ default; ATCUD code `N/D` = "
            "not registered yet, `N/A` = not relevant for ATCUD)"
        ),
        table=sequence_table(sequences),
        buttons=buttons,
        figures={
            "sequences": str(len(sequences)),
            "default_serie": next((s.serie for s in sequences if s.default_sequence), ""),
        },
    )


async def show_sequence(client: InvoiceXpressClient, args: SequenceId, ctx: Context) -> Reply:
    s = await client.sequence(args.id)
    buttons = []
    if not s.default_sequence:
        buttons.append(
            Button(
                label="Set as default",
                command=grammar.line(f"{SLASH} sequence set-current", id=s.id),
            )
        )
    refusal = s.why_not_registrable()
    if refusal is None:
        # Offered only where the API would accept it (not the default, no documents yet).
        buttons.append(
            Button(
                label="Register with AT",
                command=grammar.line(f"{SLASH} sequence register", id=s.id),
            )
        )
    return Reply(
        text=f"*Sequence {s.serie}* (id {s.id})",
        fields=[
            ("Default", "yes ★" if s.default_sequence else "no"),
            ("Current invoice number", str(s.current_invoice_number)),
            ("ATCUD validation code", s.code_shown),
            ("AT registration", _registration(s, refusal)),
        ],
        buttons=buttons,
    )


def _registration(s: Sequence, refusal: str | None) -> str:
    if s.registered:
        return "registered"
    if refusal is None:
        return "not registered yet: it can be registered (button below)"
    if s.validation_code == NOT_REGISTERED:
        return (
            f"not registered, and it cannot be through the API: {refusal}. Create and register "
            f"a new sequence with `/{SLASH} sequence create <serie>`."
        )
    return f"not needed: {refusal}"


async def set_current(client: InvoiceXpressClient, args: SequenceId, ctx: Context) -> Reply:
    await client.set_current(args.id)
    s = await client.sequence(args.id)
    return Reply(text=f"★ Sequence *{s.serie}* (id {s.id}) is now the default.")


async def create_sequence(client: InvoiceXpressClient, args: CreateSequence, ctx: Context) -> Reply:
    s = await client.create_sequence(args.serie, default=args.default)
    default = " and set as default ★" if s.default_sequence else ""
    return Reply(
        text=f"Sequence *{s.serie}* created (id {s.id}){default}.",
        fields=[("ATCUD validation code", s.code_shown)],
    )


async def register_sequence(client: InvoiceXpressClient, args: SequenceId, ctx: Context) -> Reply:
    s = await client.register_sequence(args.id)
    return Reply(
        text=f"Sequence *{s.serie}* (id {s.id}) is registered with the tax authority.",
        fields=[("ATCUD validation code", s.code_shown)],
    )


async def at_communication(
    client: InvoiceXpressClient, args: AtCommunication, ctx: Context
) -> Reply:
    await client.at_communication(
        subuser=args.subuser,
        password=args.password.get_secret_value(),
        communication_type=args.communication_type,
    )
    return Reply(
        text=(
            f"AT communication saved: sub-user `{args.subuser}`, "
            f"communication type `{args.communication_type}`. The password was sent, not kept."
        )
    )


def _describe_create(args: CreateSequence) -> str:
    body = {"sequence": {"serie": args.serie, "default_sequence": "1" if args.default else "0"}}
    return (
        f"Create invoice sequence *{args.serie}*"
        f"{' as the default' if args.default else ''} and register it with the tax authority.\n"
        f"`POST {api.SEQUENCES}` `{json.dumps(body)}`"
    )


def _describe_register(args: SequenceId) -> str:
    return (
        f"Register sequence {args.id} with the tax authority (AT).\n"
        f"`PUT {api.REGISTER.format(id=args.id)}`"
    )


def _unknown_create(args: CreateSequence) -> Reply:
    return Reply(
        text=(
            f"Check whether sequence *{args.serie}* exists before asking again: "
            "the request reached InvoiceXpress but its answer was lost."
        ),
        buttons=[Button(label="List sequences", command=grammar.line(f"{SLASH} sequences"))],
    )


def _unknown_register(args: SequenceId) -> Reply:
    return Reply(
        text=(
            f"Check sequence {args.id}'s ATCUD code before asking again: "
            "the request reached InvoiceXpress but its answer was lost."
        ),
        buttons=[
            Button(label="Show sequence", command=grammar.line(f"{SLASH} sequence", id=args.id))
        ],
    )


AT_FORM = Form(
    title="AT communication",
    submit="Save",
    fields=[
        FormField(
            name="subuser",
            label="AT sub-user",
            placeholder="123456789/3",
            hint="NIF (9 digits), a slash, and the sub-user number.",
        ),
        FormField(
            name="password",
            label="AT password",
            kind="secret",
            hint="Sent to InvoiceXpress Base64-encoded; never shown, logged or stored here.",
        ),
        FormField(
            name="communication_type",
            label="Communication type",
            kind="select",
            options=[(t, t) for t in api.COMMUNICATION_TYPES],
        ),
    ],
)


async def _check_create(
    client: InvoiceXpressClient, args: CreateSequence, ctx: Context
) -> Evidence:
    found = [s for s in await client.sequences() if s.serie == args.serie]
    if not found:
        return Evidence(
            text=f"InvoiceXpress lists no sequence *{args.serie}*: it was not created.",
            verdict="not done",
        )
    sequence = found[0]
    return Evidence(
        text=(
            f"InvoiceXpress lists sequence *{args.serie}* (id {sequence.id}, ATCUD code "
            f"`{sequence.validation_code or '–'}`): it was created."
        ),
        verdict="done",
    )


async def _check_register(client: InvoiceXpressClient, args: SequenceId, ctx: Context) -> Evidence:
    sequence = await client.sequence(args.id)
    code = sequence.validation_code or "–"
    if sequence.registered:
        return Evidence(
            text=f"Sequence {args.id} has the ATCUD code `{code}`: it is registered.",
            verdict="done",
        )
    return Evidence(
        text=f"Sequence {args.id} still shows `{code}`: it is not registered.",
        verdict="not done",
    )


COMMANDS: list[Command[Any, InvoiceXpressClient]] = [
    Command(
        slash=SLASH,
        words=("sequences",),
        summary="list invoice sequences, with the default marked ★",
        args=NoArgs,
        handler=list_sequences,
        role=Role.VIEWER,
        read_only=True,
        step=True,
        outputs=(("sequences", "Number of sequences"), ("default_serie", "The default serie")),
    ),
    Command(
        slash=SLASH,
        words=("sequence",),
        summary="show one sequence",
        args=SequenceId,
        handler=show_sequence,
        role=Role.VIEWER,
        read_only=True,
    ),
    Command(
        slash=SLASH,
        words=("sequence", "set-current"),
        summary="make a sequence the default",
        args=SequenceId,
        handler=set_current,
        role=Role.OPERATOR,
    ),
    Command(
        slash=SLASH,
        words=("sequence", "create"),
        summary="create a sequence (also registers it with the tax authority)",
        args=CreateSequence,
        handler=create_sequence,
        role=Role.OPERATOR,
        approval=True,
        idempotent=False,
        example="/invoicexpress sequence create 2027 default=yes",
        describe=_describe_create,
        unknown_hint=_unknown_create,
        check_outcome=_check_create,
    ),
    Command(
        slash=SLASH,
        words=("sequence", "register"),
        summary="register an existing sequence with the tax authority",
        args=SequenceId,
        handler=register_sequence,
        role=Role.OPERATOR,
        approval=True,
        idempotent=False,
        describe=_describe_register,
        unknown_hint=_unknown_register,
        check_outcome=_check_register,
    ),
    Command(
        slash=SLASH,
        words=("at-communication",),
        summary="set the AT sub-user, password and communication type",
        args=AtCommunication,
        handler=at_communication,
        role=Role.ADMIN,
        idempotent=False,
        form=AT_FORM,
        example="/invoicexpress at-communication",
    ),
]


def _configured(settings: InvoiceXpressSettings) -> bool:
    return settings.api_key is not None and bool(settings.account or settings.base_url)


def _open(
    settings: InvoiceXpressSettings, transport: httpx.AsyncBaseTransport | None
) -> InvoiceXpressClient:
    assert settings.api_key is not None
    base_url = settings.base_url or api.base_url_for(settings.account or "")
    return InvoiceXpressClient.open(
        base_url=base_url, api_key=settings.api_key.get_secret_value(), transport=transport
    )


def _sandbox() -> tuple[InvoiceXpressSettings, InvoiceXpressSandbox]:
    settings = InvoiceXpressSettings(
        account="sandbox", api_key=SecretStr(SANDBOX_API_KEY), base_url=SANDBOX_BASE_URL
    )
    return settings, InvoiceXpressSandbox()


async def _check(client: InvoiceXpressClient) -> str:
    sequences = await client.sequences()
    default = next((s.serie for s in sequences if s.default_sequence), "none")
    return f"{plural(len(sequences), 'sequence')}, default {default}"


PROVIDER = Provider(
    name=SLASH,
    title="InvoiceXpress",
    settings=InvoiceXpressSettings,
    configured=_configured,
    open_client=_open,
    sandbox=_sandbox,
    commands=COMMANDS,
    check=_check,
)
