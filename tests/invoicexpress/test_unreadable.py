"""Unreadable answers: a write answered with HTML, garbage, half a body or a gateway's 502 is
"outcome unknown" whether or not InvoiceXpress acted, and is sent once; a read answered so is
failed with a sentence, not an error inside the bot."""

from __future__ import annotations

import httpx
import pytest

from commands.http import OutcomeUnknown, ProviderUnavailable
from commands.invoicexpress.client import InvoiceXpressClient
from commands.invoicexpress.sandbox import InvoiceXpressSandbox
from commands.sandbox import Garble, GarbleKind

KINDS: tuple[GarbleKind, ...] = ("html", "garbage", "truncated", "502")


def series(sandbox: InvoiceXpressSandbox) -> list[str]:
    return [s.serie for s in sandbox.sequences.values()]


@pytest.mark.parametrize("acted", [True, False], ids=["after-acting", "before-acting"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_answer_to_create_is_outcome_unknown(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, kind: GarbleKind, acted: bool
) -> None:
    sandbox.control.garble = Garble(kind, acted=acted)

    with pytest.raises(OutcomeUnknown) as caught:
        await client.create_sequence("FT2027", default=False)

    message = caught.value.message
    assert message.startswith("the creation of sequence FT2027 was sent")
    if kind == "502":
        assert "server error (HTTP 502), which does not say whether it happened" in message
    else:
        assert "could not be read" in message
    assert [r.method for r in sandbox.control.requests] == ["POST"]  # sent once
    assert series(sandbox).count("FT2027") == (1 if acted else 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_register_and_at_communication_are_unknown_too(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, kind: GarbleKind
) -> None:
    target = sandbox.add("FT2028", default=False)
    sandbox.control.garble = Garble(kind, acted=True)

    with pytest.raises(OutcomeUnknown, match=f"^the registration of sequence {target} was sent"):
        await client.register_sequence(target)
    with pytest.raises(
        OutcomeUnknown, match="^the change of the AT communication settings was sent"
    ):
        await client.at_communication(
            subuser="123456789/3", password="pass-word-1", communication_type="auto"
        )
    # Each sent once, and acted on; no read of the sequence afterwards either.
    assert [r.method for r in sandbox.control.requests] == ["PUT", "POST"]
    assert sandbox.sequences[target].registered
    assert sandbox.at_settings == {"at_subuser": "123456789/3", "communication_type": "auto"}


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_answer_to_a_read_is_failed_with_a_sentence(
    client: InvoiceXpressClient, sandbox: InvoiceXpressSandbox, kind: GarbleKind
) -> None:
    sandbox.control.garble = Garble(kind, acted=True, matches=lambda request: True)
    with pytest.raises(ProviderUnavailable) as caught:
        await client.sequences()
    assert not isinstance(caught.value, OutcomeUnknown)
    expected = "internal error (HTTP 502)" if kind == "502" else "something that is not JSON"
    assert expected in caught.value.message


def answering(body: dict[str, object]) -> InvoiceXpressClient:
    """A client whose every request gets HTTP 200 with `body`."""
    return InvoiceXpressClient.open(
        base_url="https://acme.app.invoicexpress.com",
        api_key="mock-key-1234",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)),
    )


async def test_an_answer_in_an_unexpected_shape() -> None:
    client = answering({"sequence": {"name": "FT2027"}})
    with pytest.raises(ProviderUnavailable) as read:
        await client.sequence(5)
    with pytest.raises(OutcomeUnknown) as written:
        await client.create_sequence("FT2027", default=False)
    await client.http.aclose()

    assert read.value.message == "sequence 5 came back in an unexpected shape"
    assert written.value.message == (
        "the creation of sequence FT2027 was sent and accepted, but the answer came back in an "
        "unexpected shape"
    )
