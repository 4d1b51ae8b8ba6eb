"""Bad `/smsc` input is answered with what is wrong and the expected form; SMSC is never asked."""

from __future__ import annotations

import pytest

from commands import grammar
from commands.types import COMMA
from tests.support.smsc import Env, run_typed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("invoice create acme", "`sum`: is required"),
        ("invoice create acme 0", "`sum`: must be greater than zero"),
        ("invoice create acme 0.00", "`sum`: must be greater than zero"),
        ("invoice create acme -5", "`sum`: must be greater than zero"),
        ("invoice create acme 10.555", "`sum`: use at most two decimals"),
        (
            "invoice create acme ten",
            "`sum`: 'ten' is not a number (use digits and a dot, like 1500.00)",
        ),
        ("invoice create acme 1e3", "`sum`: '1e3' is not a number"),
        ("invoice create acme 1,50", f"`sum`: '1,50' has a comma: {COMMA}"),
        ("invoice create acme 1,000", f"`sum`: '1,000' has a comma: {COMMA}"),
        ("invoice create acme 1,000.50", f"`sum`: '1,000.50' has a comma: {COMMA}"),
        (
            "invoice create acme 99999999999999999999",
            "`sum`: 99999999999999999999 is too large: the most one command may move or invoice "
            "is 1000000; check the amount, or split it",
        ),
        ("invoice create acme 1000000.01", "`sum`: 1000000.01 is too large"),
        ("invoice create sum=100", "`user`: is required"),
        ("invoice create", "`user`: is required\n`sum`: is required"),
        (
            "invoice create id:abc 100",
            "`user`: 'id:abc' is not a sub-client ID: write id: and digits, like id:101",
        ),
        ("invoice create id: 100", "`user`: 'id:' is not a sub-client ID"),
        ("invoice create id:0 100", "`user`: 'id:0' is not a sub-client ID"),
        ("invoice create 'acme corp' 100", "`user`: 'acme corp' is not a sub-client login"),
        ("invoice create acme 100 service=", "`service`: must not be empty"),
        ("invoice get acme", "`id`: is required"),
        ("invoice get id:x1 501", "`user`: 'id:x1' is not a sub-client ID"),
        ("invoice get acme 50a", "`id`: '50a' is not a positive whole number"),
        ("act get acme 701 num=7", "Give the act's ID or its number (num=<n>), not both.\n"),
        ("act get acme", "Give the act's ID, or its number as num=<n>.\n"),
        ("act get acme num=seven", "`num`: 'seven' is not a positive whole number"),
        ("act get", "`user`: is required"),
    ],
)
async def test_field_errors(env: Env, text: str, message: str) -> None:
    with pytest.raises(grammar.FieldErrors) as caught:
        await run_typed(env, text)
    shown = caught.value.message
    assert message in shown
    assert "`arguments`" not in shown and "should" not in shown  # no pydantic wording
    assert "Expected: `/smsc " in shown and "Example: `/smsc " in shown
    assert env.sandbox.control.requests == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("invoice create acme 100 servise=x", "has no option `servise`. Did you mean `service=`?"),
        ("invoice get acme 501 502", "Too many words: `502` is not expected."),
        ("act get acme 701 extra", "Too many words: `extra` is not expected."),
        ("invoice delete acme 501", "Did you mean `/smsc invoice get`?"),
        ("invoice create acme 100 'unclosed", "close every quote"),
    ],
)
async def test_grammar_errors(env: Env, text: str, message: str) -> None:
    with pytest.raises(grammar.GrammarError) as caught:
        await run_typed(env, text)
    assert message in caught.value.message
    assert env.sandbox.control.requests == []


async def test_good_input_does_reach_smsc(env: Env) -> None:
    """The harness above is the real path: valid text makes exactly one request."""
    await run_typed(env, "invoice get acme 501")
    assert len(env.sandbox.control.requests) == 1
