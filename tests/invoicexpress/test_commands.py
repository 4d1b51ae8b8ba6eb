"""`/invoicexpress` handlers called directly, and bad input refused before any provider call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from commands import grammar
from commands.base import Context, NoArgs, Reply
from commands.http import ProviderRejected
from commands.invoicexpress import commands as ix
from commands.invoicexpress.client import InvoiceXpressClient
from commands.invoicexpress.models import NOT_REGISTERED, NOT_RELEVANT
from commands.invoicexpress.sandbox import InvoiceXpressSandbox

CTX = Context(user_id="U1", channel_id="C1")


def command(path: str) -> Any:
    return next(c for c in ix.COMMANDS if c.path == f"invoicexpress {path}")


def other_id(sandbox: InvoiceXpressSandbox) -> int:
    return next(s.id for s in sandbox.sequences.values() if not s.default)


async def typed(client: InvoiceXpressClient, text: str) -> Reply:
    """What the bot does with typed text, minus roles and approvals: parse, validate, run."""
    parsed = grammar.parse("invoicexpress", text, ix.COMMANDS)
    assert isinstance(parsed, grammar.Parsed)
    args = grammar.validate(parsed.command, parsed.values)
    reply: Reply = await parsed.command.handler(client, args, CTX)
    return reply


# --- handlers ----------------------------------------------------------------------------------


async def test_list_shows_every_sequence_with_its_code(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    reply = await ix.list_sequences(client, NoArgs(), CTX)
    assert reply.table is not None
    assert list(reply.table.columns) == ["Serie", "ID", "Invoice no.", "ATCUD code"]
    expected = [
        [
            ("★ " if s.default else "") + s.serie,
            str(s.id),
            str(s.current_invoice_number),
            s.validation_code,
        ]
        for s in sandbox.sequences.values()
    ]
    assert [list(row) for row in reply.table.rows] == expected
    assert any(row[3] == NOT_REGISTERED for row in expected)  # the sample has an unregistered one
    assert reply.text.startswith(f"*{len(expected)} invoice sequences*")
    assert not reply.private


async def test_list_of_nothing_says_how_to_start(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    sandbox.sequences.clear()
    reply = await ix.list_sequences(client, NoArgs(), CTX)
    assert reply.text == "No sequences yet. Create one with `/invoicexpress sequence create`."
    assert reply.table is None and not reply.buttons


async def test_show_offers_default_and_register_buttons_only_when_useful(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    # The sample: 2025 and ★2026 registered, NC2026 new and unregistered, 2022 unregistered
    # but with documents (from before ATCUD), which the API no longer registers.
    registrable = {"NC2026"}
    for stored in sandbox.sequences.values():
        reply = await ix.show_sequence(client, ix.SequenceId(id=stored.id), CTX)
        assert reply.text == f"*Sequence {stored.serie}* (id {stored.id})"
        fields = dict(reply.fields)
        assert fields["Default"] == ("yes ★" if stored.default else "no")
        assert fields["Current invoice number"] == str(stored.current_invoice_number)
        assert fields["ATCUD validation code"] == stored.validation_code
        wanted = []
        if not stored.default:
            wanted.append(f"/invoicexpress sequence set-current id={stored.id}")
        if stored.serie in registrable:
            wanted.append(f"/invoicexpress sequence register id={stored.id}")
        assert [b.command for b in reply.buttons] == wanted
    assert {s.serie for s in sandbox.sequences.values()} >= registrable | {"2022"}


async def test_a_sequence_with_documents_is_not_offered_for_registration(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    [old] = [s for s in sandbox.sequences.values() if s.serie == "2022"]
    assert old.validation_code == NOT_REGISTERED and old.current_invoice_number > 0
    reply = await ix.show_sequence(client, ix.SequenceId(id=old.id), CTX)
    assert "Register with AT" not in [b.label for b in reply.buttons]
    assert dict(reply.fields)["AT registration"] == (
        "not registered, and it cannot be through the API: documents were already issued in "
        "it, so the API no longer registers it. Create and register a new sequence with "
        "`/invoicexpress sequence create <serie>`."
    )


async def test_a_default_sequence_is_not_offered_for_registration(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    new_default = sandbox.add("FT2030", default=True, code=NOT_REGISTERED)
    reply = await ix.show_sequence(client, ix.SequenceId(id=new_default), CTX)
    assert [b.label for b in reply.buttons] == []  # already the default, and not registrable
    assert dict(reply.fields)["AT registration"].startswith(
        "not registered, and it cannot be through the API: it is the default sequence"
    )


async def test_a_sequence_not_relevant_for_atcud_needs_no_registration(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    outside = sandbox.add("EXP2026", default=False, code=NOT_RELEVANT)
    reply = await ix.show_sequence(client, ix.SequenceId(id=outside), CTX)
    assert [b.label for b in reply.buttons] == ["Set as default"]
    fields = dict(reply.fields)
    assert fields["ATCUD validation code"] == "N/A"
    assert fields["AT registration"] == "not needed: it is not relevant for ATCUD"


async def test_set_current_confirms_the_new_default(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    target = other_id(sandbox)
    reply = await ix.set_current(client, ix.SequenceId(id=target), CTX)
    assert sandbox.sequences[target].default
    assert reply.text == (
        f"★ Sequence *{sandbox.sequences[target].serie}* (id {target}) is now the default."
    )
    assert [r.method for r in sandbox.control.requests] == ["PUT", "GET"]


@pytest.mark.parametrize("default", [True, False])
async def test_create_reports_id_default_and_atcud(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, default: bool
) -> None:
    reply = await ix.create_sequence(client, ix.CreateSequence(serie="FT27", default=default), CTX)
    [created] = [s for s in sandbox.sequences.values() if s.serie == "FT27"]
    tail = " and set as default ★" if default else ""
    assert reply.text == f"Sequence *FT27* created (id {created.id}){tail}."
    assert dict(reply.fields) == {"ATCUD validation code": created.validation_code}


async def test_the_approval_card_shows_exactly_the_body_that_is_sent(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    create = command("sequence create")
    args = grammar.validate(create, {"serie": "FT27", "default": "yes"})
    description = create.describe(args)
    assert description.startswith("Create invoice sequence *FT27* as the default")
    shown = json.loads(description.split("`POST /sequences.json` `")[1].rstrip("`"))
    await create.handler(client, args, CTX)
    assert json.loads(sandbox.control.requests[0].body) == shown


async def test_register_reports_the_new_code(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    [target] = [s for s in sandbox.sequences.values() if s.serie == "NC2026"]
    assert target.validation_code == NOT_REGISTERED
    reply = await ix.register_sequence(client, ix.SequenceId(id=target.id), CTX)
    assert target.validation_code != NOT_REGISTERED
    # register.json answers with the sequence itself: no second call to read it.
    assert [r.method for r in sandbox.control.requests] == ["PUT"]
    assert reply.text == (
        f"Sequence *{target.serie}* (id {target.id}) is registered with the tax authority."
    )
    assert dict(reply.fields) == {"ATCUD validation code": target.validation_code}
    register = command("sequence register")
    assert f"`PUT /sequences/{target.id}/register.json`" in register.describe(
        ix.SequenceId(id=target.id)
    )


async def test_at_communication_confirms_without_the_password(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    args = ix.AtCommunication(
        subuser="123456789/3", password=SecretStr("Pa55-word-AT"), communication_type="manual"
    )
    reply = await ix.at_communication(client, args, CTX)
    assert reply.text == (
        "AT communication saved: sub-user `123456789/3`, communication type `manual`. "
        "The password was sent, not kept."
    )
    assert "Pa55-word-AT" not in repr(reply)
    assert args.preview()["password"] == "••••••"
    assert sandbox.at_settings == {"at_subuser": "123456789/3", "communication_type": "manual"}


async def test_handlers_let_provider_errors_through(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    with pytest.raises(ProviderRejected, match="no sequence 999"):
        await ix.show_sequence(client, ix.SequenceId(id=999), CTX)


def test_unknown_outcome_hints_say_what_to_check() -> None:
    create = command("sequence create")
    hint = create.unknown_hint(ix.CreateSequence(serie="FT27"))
    assert "Check whether sequence *FT27* exists before asking again" in hint.text
    assert [b.command for b in hint.buttons] == ["/invoicexpress sequences"]
    register = command("sequence register")
    hint = register.unknown_hint(ix.SequenceId(id=7))
    assert "Check sequence 7's ATCUD code" in hint.text
    assert [b.command for b in hint.buttons] == ["/invoicexpress sequence id=7"]


def test_only_writes_are_non_idempotent_and_risky_ones_need_approval() -> None:
    flags = {c.path.removeprefix("invoicexpress "): (c.idempotent, c.approval) for c in ix.COMMANDS}
    assert flags == {
        "sequences": (True, False),
        "sequence": (True, False),
        "sequence set-current": (True, False),
        "sequence create": (False, True),
        "sequence register": (False, True),
        "at-communication": (False, False),
    }


async def test_typed_text_reaches_the_handler(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    reply = await typed(client, "Sequence Create “FT27” default=YES")
    assert "and set as default ★" in reply.text
    assert json.loads(sandbox.control.requests[0].body) == {
        "sequence": {"serie": "FT27", "default_sequence": "1"}
    }


# --- bad input: refused with a sentence, and nothing is sent -------------------------------------

SEQUENCE_USAGE = "Expected: `/invoicexpress sequence <id>`\nExample: `/invoicexpress sequence 42`"
CREATE_USAGE = (
    "Expected: `/invoicexpress sequence create <serie> [default=<yes/no>]`\n"
    "Example: `/invoicexpress sequence create 2027 default=yes`"
)
AT_USAGE = (
    "Expected: `/invoicexpress at-communication subuser=<text> password=<secret> "
    "communication_type=<auto|guides|manual|portal_at>`\n"
    "Example: `/invoicexpress at-communication`"
)
AT_OK = "subuser=123456789/3 password=pw-1234 communication_type=auto"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sequence", f"`id`: is required\n{SEQUENCE_USAGE}"),
        ("sequence abc", f"`id`: 'abc' is not a positive whole number\n{SEQUENCE_USAGE}"),
        ("sequence 0", f"`id`: '0' is not a positive whole number\n{SEQUENCE_USAGE}"),
        ("sequence -4", f"`id`: '-4' is not a positive whole number\n{SEQUENCE_USAGE}"),
        ("sequence id=1.5", f"`id`: '1.5' is not a positive whole number\n{SEQUENCE_USAGE}"),
        (
            "sequence set-current",
            "`id`: is required\nExpected: `/invoicexpress sequence set-current <id>`",
        ),
        (
            "sequence register x1",
            "`id`: 'x1' is not a positive whole number\n"
            "Expected: `/invoicexpress sequence register <id>`",
        ),
        ("sequence create", f"`serie`: is required\n{CREATE_USAGE}"),
        (
            'sequence create "FT 2027"',
            f"`serie`: use letters, digits, '-', '_' or '/' only, like 2027 or FT-2027\n"
            f"{CREATE_USAGE}",
        ),
        (
            "sequence create " + "F" * 21,
            f"`serie`: is 21 characters long; the most allowed is 20\n{CREATE_USAGE}",
        ),
        ('sequence create serie=" "', "`serie`: must not be empty"),
        (
            "sequence create 2027 default=maybe",
            f"`default`: 'maybe' is not yes or no\n{CREATE_USAGE}",
        ),
        (
            "at-communication subuser=12345678/3 password=pw-1234 communication_type=auto",
            "`subuser`: must be a 9-digit NIF, a slash and a number, like 123456789/3\n" + AT_USAGE,
        ),
        (
            "at-communication subuser=123456789 password=pw-1234 communication_type=auto",
            "`subuser`: must be a 9-digit NIF, a slash and a number",
        ),
        (
            "at-communication subuser=123456789/3 password= communication_type=auto",
            f"`password`: is required\n{AT_USAGE}",
        ),
        (
            'at-communication subuser=123456789/3 password="  " communication_type=auto',
            "`password`: is required",
        ),
        (
            "at-communication subuser=123456789/3 password=pw-1234 communication_type=fax",
            "`communication_type`: 'fax' is not one of the choices: use auto, guides, manual or "
            "portal_at\n" + AT_USAGE,
        ),
        (
            "at-communication subuser=123456789/3 communication_type=auto",
            f"`password`: is required\n{AT_USAGE}",
        ),
    ],
)
async def test_bad_values_are_refused_before_any_call(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, text: str, message: str
) -> None:
    with pytest.raises(grammar.FieldErrors) as caught:
        await typed(client, text)
    assert message in caught.value.message
    assert sandbox.control.requests == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sequence 5 6", f"Too many words: `6` is not expected.\n{SEQUENCE_USAGE}"),
        (
            "sequence create 2027 defualt=yes",
            "`/invoicexpress sequence create` has no option `defualt`. Did you mean `default=`?",
        ),
        ("sequence create 2027 default=yes default=no", "`default` is given twice."),
        (f"at-communication {AT_OK} subuser=987654321/1", "`subuser` is given twice."),
        (f"at-communication {AT_OK} extra", "Too many words: `extra` is not expected."),
        ('sequence create "2027', "Could not read the command"),
        ("sequnces", "Did you mean `/invoicexpress sequences`?"),
    ],
)
async def test_bad_words_are_refused_before_any_call(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, text: str, message: str
) -> None:
    with pytest.raises(grammar.GrammarError) as caught:
        await typed(client, text)
    assert message in caught.value.message
    assert sandbox.control.requests == []


async def test_a_refusal_never_echoes_the_at_password(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox
) -> None:
    text = "at-communication subuser=bad password=Very-Secret-AT communication_type=fax"
    with pytest.raises(grammar.FieldErrors) as caught:
        await typed(client, text)
    assert set(caught.value.errors) == {"subuser", "communication_type"}
    assert "Very-Secret-AT" not in caught.value.message
    assert "Very-Secret-AT" not in str(caught.value)
    assert sandbox.control.requests == []
