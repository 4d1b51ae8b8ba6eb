"""Message metadata as a reply carries it: a snake_case event type and text values, for any
caller (approval cards, audit anchors); and which argument of a command is its amount."""

from __future__ import annotations

from typing import Any

import pytest

from commands.base import MessageMetadata
from commands.registry import PROVIDERS
from commands.types import money_field

ANCHOR = MessageMetadata(event_type="billing_audit_anchor", payload={"head": "9f2c", "row": "41"})


def test_any_snake_case_event_type_with_text_values_is_metadata() -> None:
    assert ANCHOR.event_type == "billing_audit_anchor"
    assert MessageMetadata(event_type="billing_approval").payload == {}


@pytest.mark.parametrize("event_type", ["", "Billing", "billing approval", "1st", "billing-x"])
def test_an_event_type_that_is_not_snake_case_is_refused(event_type: str) -> None:
    with pytest.raises(ValueError, match="snake_case event type"):
        MessageMetadata(event_type=event_type)


def test_payload_values_are_text() -> None:
    amount: Any = 8  # a number where text belongs, as an untyped caller might pass
    with pytest.raises(ValueError, match="every payload value is text"):
        MessageMetadata(event_type="billing_approval", payload={"amount": amount})


def test_the_amount_is_the_argument_declared_as_money() -> None:
    commands = {c.path: c for p in PROVIDERS for c in p.commands}
    assert money_field(commands["voipcloud move-funds"].args) == "amount"
    assert money_field(commands["smsc invoice create"].args) == "sum"
    assert money_field(commands["invoicexpress sequence create"].args) is None
    with_money = sorted(p for p, c in commands.items() if money_field(c.args))
    assert with_money == ["smsc invoice create", "voipcloud move-funds"]
