"""Unreadable answers to SMSC's one write, `add_account`: HTML, garbage, a gateway's 502, or a
cut-off answer without the invoice's ID are "outcome unknown", sent once, whether or not SMSC
made the invoice. A cut-off answer that still carries the ID and sum is a readable success whose
PDF is reported missing. Downloads stay plain failures."""

from __future__ import annotations

from decimal import Decimal

import pytest

from commands.http import OutcomeUnknown, ProviderRejected, ProviderUnavailable
from commands.sandbox import Garble, GarbleKind, Recorded
from commands.smsc import client as api
from tests.support.smsc import Env


def creates(request: Recorded) -> bool:
    """SMSC writes with GET: the create is the request carrying `add_account`."""
    return request.query.get(api.CREATE_INVOICE) == "1"


@pytest.mark.parametrize("acted", [True, False], ids=["after-acting", "before-acting"])
@pytest.mark.parametrize("kind", ["html", "garbage", "502"])
async def test_an_unreadable_answer_to_create_is_outcome_unknown(
    env: Env, kind: GarbleKind, acted: bool
) -> None:
    before = len(env.sandbox.invoices)
    env.sandbox.control.garble = Garble(kind, acted=acted, matches=creates)

    with pytest.raises(OutcomeUnknown) as caught:
        await env.client.create_invoice("acme", Decimal("1500"), service="SMS package")

    assert "may or may not exist" in caught.value.message
    assert len(env.sandbox.control.requests) == 1  # sent once, never again
    assert len(env.sandbox.invoices) == before + (1 if acted else 0)


async def test_half_an_answer_without_the_invoice_id_is_outcome_unknown(env: Env) -> None:
    env.sandbox.control.garble = Garble("truncated", acted=False, matches=creates)
    with pytest.raises(OutcomeUnknown, match="may or may not exist"):
        await env.client.create_invoice("acme", Decimal("1500"))
    assert len(env.sandbox.control.requests) == 1


async def test_half_an_answer_with_the_invoice_id_is_the_invoice_without_its_pdf(
    env: Env,
) -> None:
    env.sandbox.control.garble = Garble("truncated", acted=True, matches=creates)
    created = await env.client.create_invoice("acme", Decimal("1500"))

    assert created.id in env.sandbox.invoices
    assert created.sum == Decimal("1500")
    assert created.pdf is None
    assert created.pdf_problem is not None
    assert len(env.sandbox.control.requests) == 1


@pytest.mark.parametrize(
    ("kind", "error"),
    [("html", ProviderRejected), ("garbage", ProviderRejected), ("502", ProviderUnavailable)],
)
async def test_an_unreadable_download_is_just_failed(
    env: Env, kind: GarbleKind, error: type[Exception]
) -> None:
    env.sandbox.control.garble = Garble(kind, acted=True, matches=lambda request: True)
    with pytest.raises(error) as caught:
        await env.client.invoice_pdf("acme", 501)
    assert not isinstance(caught.value, OutcomeUnknown)
