"""Unreadable answers: a write answered with HTML, garbage, half a body or a gateway's 502 is
"outcome unknown" whether or not the portal acted, and is sent once; a read answered so is just
failed, as before."""

from __future__ import annotations

from decimal import Decimal

import pytest

from commands.http import OutcomeUnknown, ProviderRejected, ProviderUnavailable
from commands.sandbox import Garble, GarbleKind
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.sandbox import VoipcloudSandbox
from tests.support.voipcloud import TODAY

MONTH = (TODAY.replace(day=1), TODAY)
KINDS: tuple[GarbleKind, ...] = ("html", "garbage", "truncated", "502")


@pytest.mark.parametrize("acted", [True, False], ids=["after-acting", "before-acting"])
@pytest.mark.parametrize("kind", KINDS)
async def test_an_unreadable_answer_to_move_funds_is_outcome_unknown(
    sandbox: VoipcloudSandbox, client: VoipcloudClient, kind: GarbleKind, acted: bool
) -> None:
    before = sandbox.customers["10023"].ledger.balance()
    sandbox.control.garble = Garble(kind, acted=acted)

    with pytest.raises(OutcomeUnknown) as caught:
        await client.move_funds("10023", Decimal("8.00"), "top-up")

    message = caught.value.message
    assert message.startswith("the transfer for customer 10023 was sent")
    if kind == "502":
        assert "server error (HTTP 502), which does not say whether it happened" in message
    else:
        assert "could not be read" in message
    assert "VOIPCLOUD_BASE_URL" not in message  # not "failed, check the URL": it may have moved
    assert [r.method for r in sandbox.control.requests] == ["PUT"]  # sent once, never again
    moved = Decimal("8.00") if acted else Decimal(0)
    assert sandbox.customers["10023"].ledger.balance() == before + moved


@pytest.mark.parametrize("kind", KINDS)
async def test_every_write_without_approval_is_unknown_too(
    sandbox: VoipcloudSandbox, client: VoipcloudClient, kind: GarbleKind
) -> None:
    sandbox.control.garble = Garble(kind, acted=True)
    with pytest.raises(OutcomeUnknown, match="^the password reset for customer 10023 was sent"):
        await client.reset_password("10023")
    with pytest.raises(OutcomeUnknown, match="^the login URL request for customer 10023 was sent"):
        await client.login_url("10023")
    with pytest.raises(OutcomeUnknown, match="^the registration of jane@example.com was sent"):
        await client.register_customer(
            first_name="Jane", last_name="Citizen", email="jane@example.com", phone="+61400000000"
        )
    assert [r.method for r in sandbox.control.requests] == ["POST", "POST", "POST"]
    assert sandbox.customers["10023"].password_resets == 1


async def test_a_clear_refusal_of_a_write_is_still_a_refusal(
    sandbox: VoipcloudSandbox, client: VoipcloudClient
) -> None:
    # Validation failures come with HTTP 200 and a non-200 code: readable, and nothing moved.
    before = sandbox.customers["10023"].ledger.balance()
    with pytest.raises(ProviderRejected):
        await client.move_funds("99999", Decimal("8.00"), "top-up")
    assert sandbox.customers["10023"].ledger.balance() == before


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("html", ProviderRejected),
        ("garbage", ProviderRejected),
        ("truncated", ProviderRejected),
        ("502", ProviderUnavailable),
    ],
)
async def test_an_unreadable_answer_to_a_read_is_just_failed(
    sandbox: VoipcloudSandbox,
    client: VoipcloudClient,
    kind: GarbleKind,
    error: type[Exception],
) -> None:
    sandbox.control.garble = Garble(kind, acted=True, matches=lambda request: True)
    with pytest.raises(error) as caught:
        await client.customer_balance("10023", *MONTH)
    assert not isinstance(caught.value, OutcomeUnknown)
    if kind == "502":
        assert len(sandbox.control.requests) == 3  # a read is retried
