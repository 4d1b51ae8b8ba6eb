"""Approval policies at their edges: which rules match, what several matching rules ask for
together (the most approvals, the highest role), where a ceiling's period begins, whose runs a
ceiling counts, and the one line a bad file is refused with.

Unit-level (a policy object, a SQLite file) so that mutation runs can repeat them quickly; the
whole path through the dispatcher is in tests/approvals/test_policies.py."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.policy import (
    Ceiling,
    Condition,
    Policy,
    PolicyError,
    Requirement,
    Rule,
    load,
    over_ceiling,
    requirement_of,
    rules_of,
    spent,
)
from bot.approvals.state import Approval
from bot.storage.store import approvals, make_engine, metadata
from commands.base import Args, Role
from commands.registry import PROVIDERS

COMMANDS = [c for p in PROVIDERS for c in p.commands]
MOVE = next(c for c in COMMANDS if c.path == "voipcloud move-funds")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC_ZONE = ZoneInfo("UTC")
# A Wednesday, 23:30 in UTC: already Thursday 08:30 in Tokyo.
NOW = datetime(2030, 1, 9, 23, 30, tzinfo=UTC)


def move(amount: str, account: str = "10023") -> Args:
    values = {"account": account, "amount": amount, "description": "top-up"}
    args: Args = MOVE.args.model_validate(values)
    return args


def policy(*rules: dict[str, Any]) -> Policy:
    return Policy.model_validate({"rules": list(rules)})


def rule(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": "voipcloud move-funds", **fields}


# --- conditions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "holding", "not_holding"),
    [
        ({"over": 500}, ["500.01", "-600", "100000"], ["500", "499.99", "-500", "0"]),
        ({"at_least": 500}, ["500", "-500", "500.01"], ["499.99", "0"]),
        ({"under": 500}, ["499.99", "-499", "0"], ["500", "500.01", "-700"]),
        ({"over": 100, "under": 200}, ["150", "100.01"], ["100", "200", "50", "300"]),
        ({"at_least": 100, "under": 200}, ["100", "199.99"], ["99.99", "200"]),
    ],
)
def test_a_condition_on_an_amount_compares_its_size_with_each_bound(
    bounds: dict[str, int], holding: list[str], not_holding: list[str]
) -> None:
    condition = Condition(field="amount", **bounds)
    assert [a for a in holding if condition.holds({"amount": a})] == holding
    assert [a for a in not_holding if condition.holds({"amount": a})] == []


def test_a_condition_never_holds_for_a_missing_or_unreadable_amount() -> None:
    condition = Condition(field="amount", under=500)
    assert not condition.holds({})
    assert not condition.holds({"account": "10"})
    assert not condition.holds({"amount": "ten"})
    assert not condition.holds({"amount": "Infinity"})
    assert not condition.holds({"amount": "-Infinity"})
    assert not Condition(field="amount", over=500).holds({"amount": "Infinity"})
    assert not Condition(field="amount", over=500).holds({"amount": "NaN"})
    assert Condition(field="amount").holds({"amount": "anything"})  # only "given"
    assert not Condition(field="amount").holds({"other": "1"})


def test_a_condition_on_a_list_matches_any_item_of_the_value() -> None:
    condition = Condition.model_validate({"field": "account", "in": ["10023", "10024"]})
    assert condition.holds({"account": "10023"})
    assert condition.holds({"account": "10099, 10024"})
    assert condition.holds({"account": "10024,10099"})
    assert not condition.holds({"account": "10099"})
    assert not condition.holds({"account": "100231"})
    assert not condition.holds({})
    both = Condition.model_validate({"field": "amount", "in": ["600", "700"], "over": 650})
    assert both.holds({"amount": "700"})
    assert not both.holds({"amount": "600"})
    assert not both.holds({"amount": "800"})


def test_conditions_read_back_in_words() -> None:
    assert str(Condition(field="amount", over=Decimal("500.5"))) == "amount over 500.5"
    assert str(Condition(field="amount", at_least=10)) == "amount at least 10"
    assert str(Condition(field="amount", under=5)) == "amount under 5"
    listed = Condition.model_validate({"field": "account", "in": ["1", "2"]})
    assert str(listed) == "account in 1, 2"
    every = Condition.model_validate(
        {"field": "amount", "over": 1, "at_least": 2, "under": 3, "in": ["9"]}
    )
    assert str(every) == "amount over 1 and amount at least 2 and amount under 3 and amount in 9"
    assert str(Condition(field="amount")) == "amount given"


# --- rules and what several of them ask together -----------------------------------------------


def test_a_rule_matches_its_own_command_when_every_condition_holds() -> None:
    both = Rule.model_validate(
        rule("band", when=[{"field": "amount", "over": 100}, {"field": "amount", "under": 200}])
    )
    assert both.matches("voipcloud move-funds", {"amount": "150"})
    assert not both.matches("voipcloud move-funds", {"amount": "250"})
    assert not both.matches("voipcloud move-funds", {"amount": "50"})
    assert not both.matches("smsc invoice create", {"amount": "150"})
    assert Rule.model_validate(rule("any")).matches("voipcloud move-funds", {})
    assert not Rule.model_validate(rule("any")).matches("voipcloud balance", {})


def test_a_rule_s_command_is_read_as_typed_in_slack() -> None:
    typed = Rule.model_validate({"name": "r", "command": "  /voipcloud   move-funds "})
    assert typed.command == "voipcloud move-funds"


def test_no_matching_rule_asks_for_one_approval_by_any_approver() -> None:
    found = policy(rule("big", when=[{"field": "amount", "over": 500}], approvals=3)).requirement(
        MOVE, move("20")
    )
    assert found == Requirement()
    assert (found.approvals, found.role, found.rules, found.names) == (1, Role.APPROVER, (), None)
    assert not found.step_up and not found.reason and found.ceilings == []
    assert requirement_of(Policy(), MOVE, move("20")) == Requirement()


def test_matching_rules_ask_for_the_most_approvals_and_the_highest_role() -> None:
    rules = policy(
        rule("three", approvals=3),
        rule("admin-two", approvals=2, approver_role="admin"),
        rule("never", approvals=5, when=[{"field": "amount", "over": 10**6}]),
        rule("code", step_up="totp"),
    )
    found = requirement_of(rules, MOVE, move("600"))
    assert (found.approvals, found.role) == (3, Role.ADMIN)
    assert found.names == "three, admin-two, code"
    assert found.step_up and not found.reason
    approvers = policy(rule("two", approvals=2), rule("one", reason="required"))
    found = approvers.requirement(MOVE, move("600"))
    assert (found.approvals, found.role, found.names) == (2, Role.APPROVER, "two, one")
    assert found.reason and not found.step_up
    assert not approvers.step_up and rules.step_up


def test_a_requirement_keeps_only_the_rules_with_a_ceiling_as_ceilings() -> None:
    rules = policy(rule("plain"), rule("cap", ceiling={"field": "amount", "max": 10, "per": "day"}))
    found = rules.requirement(MOVE, move("1"))
    assert [r.name for r in found.ceilings] == ["cap"]


def test_rules_read_back_in_words() -> None:
    rules = policy(
        rule("plain"),
        rule("one-admin", approvals=1, approver_role="admin"),
        rule("two", approvals=2, when=[{"field": "amount", "over": 5}]),
        rule(
            "all",
            approvals=3,
            approver_role="admin",
            ceiling={"field": "amount", "max": 100, "per": "week", "by": "account"},
            step_up="totp",
            reason="required",
            when=[{"field": "amount", "over": 1}, {"field": "amount", "under": 9}],
        ),
        rule("monthly", ceiling={"field": "amount", "max": "2.5", "per": "month"}),
    )
    assert rules.lines() == [
        "• *plain*: `/voipcloud move-funds` needs approval",
        "• *one-admin*: `/voipcloud move-funds` needs an admin's approval",
        "• *two*: `/voipcloud move-funds` when amount over 5 needs 2 approvals",
        "• *all*: `/voipcloud move-funds` when amount over 1 and amount under 9 needs "
        "3 approvals, an admin's approval, at most 100 of amount a week to one account, "
        "the approver's authenticator code, a reason",
        "• *monthly*: `/voipcloud move-funds` needs at most 2.5 of amount a month",
    ]


def stored(rules: str | None, role: str | None, needed: int) -> Approval:
    return cast(Approval, SimpleNamespace(rules=rules, approver_role=role, approvals_needed=needed))


def test_a_stored_request_keeps_the_approvals_and_role_it_was_made_under() -> None:
    rules = policy(rule("a", approvals=4), rule("b"), rule("c", approver_role="admin"))
    old = rules_of(stored(None, "admin", 2), rules)
    assert (old.approvals, old.role, old.rules) == (2, Role.ADMIN, ())
    assert rules_of(stored("", None, 1), rules).role == Role.APPROVER
    named = rules_of(stored("c, a,gone", "approver", 3), rules)
    assert (named.approvals, named.role, named.names) == (3, Role.APPROVER, "a, c")
    assert rules_of(stored("b", "admin", 1), rules).role == Role.ADMIN


# --- ceilings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("per", "begins"),
    [
        ("day", datetime(2030, 1, 10, tzinfo=TOKYO)),  # Thursday in Tokyo
        ("week", datetime(2030, 1, 7, tzinfo=TOKYO)),  # its Monday
        ("month", datetime(2030, 1, 1, tzinfo=TOKYO)),
    ],
)
def test_a_ceiling_s_period_begins_at_midnight_in_the_billing_timezone(
    per: str, begins: datetime
) -> None:
    ceiling = Ceiling.model_validate({"field": "amount", "max": 1, "per": per})
    since = ceiling.since(NOW, TOKYO)
    assert since == begins
    assert since.utcoffset() == timedelta(hours=9)
    late_in_month = datetime(2030, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert ceiling.since(late_in_month, UTC_ZONE) <= datetime(2030, 1, 31, tzinfo=UTC)


def test_a_week_ceiling_on_a_monday_begins_that_monday() -> None:
    ceiling = Ceiling.model_validate({"field": "amount", "max": 1, "per": "week"})
    monday = datetime(2030, 1, 7, 15, 0, tzinfo=UTC)
    assert ceiling.since(monday, UTC_ZONE) == datetime(2030, 1, 7, tzinfo=UTC)
    month = Ceiling.model_validate({"field": "amount", "max": 1, "per": "month"})
    assert month.since(datetime(2030, 2, 28, 1, tzinfo=UTC), UTC_ZONE) == datetime(
        2030, 2, 1, tzinfo=UTC
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'policy.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def add_run(
    engine: AsyncEngine,
    amount: str | None,
    *,
    account: str = "10023",
    status: str = "done",
    decided_at: datetime = NOW,
    path: str = "voipcloud move-funds",
    args: str | None = "",
) -> None:
    if args == "":
        args = json.dumps({"account": account, "amount": amount})
    async with engine.begin() as conn:
        await conn.execute(
            approvals.insert().values(
                command_line="/" + path,
                command_path=path,
                provider="voipcloud",
                args_preview="{}",
                args=args,
                description="a move",
                requester="U1",
                channel="C1",
                status=status,
                created_at=decided_at,
                expires_at=decided_at + timedelta(days=1),
                decided_at=decided_at,
            )
        )


DAILY = rule("daily", ceiling={"field": "amount", "max": 100, "per": "day", "by": "account"})
WEEKLY = rule("weekly", ceiling={"field": "amount", "max": 150, "per": "week"})


async def test_a_ceiling_counts_runs_executing_done_or_unknown_since_its_period_began(
    engine: AsyncEngine,
) -> None:
    since = datetime(2030, 1, 10, tzinfo=TOKYO)
    await add_run(engine, "10", status="executing")
    await add_run(engine, "-20", status="done")  # sizes: a move either way counts
    await add_run(engine, "40", status="unknown", decided_at=since)  # the first instant counts
    for status in ("pending", "failed", "rejected", "expired"):
        await add_run(engine, "1000", status=status)
    await add_run(engine, "1000", decided_at=since - timedelta(microseconds=1))
    await add_run(engine, "1000", path="voipcloud balance")
    await add_run(engine, "1000", account="10024")
    await add_run(engine, None, args=None)  # a run stored before arguments were kept
    await add_run(engine, None, args='{"account": "10023"}')
    [daily] = policy(DAILY).rules
    async with engine.connect() as conn:
        assert await spent(conn, daily, key="10023", since=since) == Decimal(70)
        assert await spent(conn, daily, key="10024", since=since) == Decimal(1000)
        assert await spent(conn, daily, key="10099", since=since) == Decimal(0)
    [weekly] = policy(WEEKLY).rules
    async with engine.connect() as conn:
        assert await spent(conn, weekly, key=None, since=since) == Decimal(1070)


async def test_a_request_that_fits_exactly_passes_and_one_more_is_refused_with_the_room_left(
    engine: AsyncEngine,
) -> None:
    await add_run(engine, "60")
    await add_run(engine, "1000", account="10024")
    needs = policy(DAILY).requirement(MOVE, move("40"))
    values = {"account": "10023", "amount": "40"}
    assert await over_ceiling_of(engine, needs, values) is None
    assert await over_ceiling_of(engine, needs, {**values, "amount": "-40"}) is None
    refused = await over_ceiling_of(engine, needs, {**values, "amount": "40.01"})
    assert refused == (
        "rule daily allows at most 100 of amount a day to one account; 60 is already used "
        "this day for account 10023, so 40.01 does not fit (40 left)"
    )
    over = await over_ceiling_of(engine, needs, {**values, "account": "10024", "amount": "1"})
    assert over == (
        "rule daily allows at most 100 of amount a day to one account; 1000 is already used "
        "this day for account 10024, so 1 does not fit (0 left)"
    )


async def test_every_ceiling_is_checked_and_the_one_passed_is_named(engine: AsyncEngine) -> None:
    await add_run(engine, "60")
    await add_run(engine, "60", account="10024")
    needs = policy(DAILY, WEEKLY).requirement(MOVE, move("31"))
    refused = await over_ceiling_of(engine, needs, {"account": "10023", "amount": "31"})
    assert refused == (
        "rule weekly allows at most 150 of amount a week; 120 is already used this week, "
        "so 31 does not fit (30 left)"
    )
    assert await over_ceiling_of(engine, needs, {"account": "10023", "amount": "30"}) is None
    without_amount = await over_ceiling_of(engine, needs, {"account": "10023"})
    assert without_amount is None


async def test_a_full_ceiling_still_lets_through_what_has_no_size(engine: AsyncEngine) -> None:
    await add_run(engine, "100")
    await add_run(engine, "Infinity")  # no size: counts nothing
    needs = policy(DAILY).requirement(MOVE, move("1"))
    assert await over_ceiling_of(engine, needs, {"account": "10023"}) is None
    assert await over_ceiling_of(engine, needs, {"account": "10023", "amount": "n/a"}) is None
    refused = await over_ceiling_of(engine, needs, {"account": "10023", "amount": "0.01"})
    assert refused is not None and "(0 left)" in refused


async def test_a_ceiling_s_day_is_the_one_in_the_billing_timezone(engine: AsyncEngine) -> None:
    # 14:00 UTC on Wednesday is 23:00 in Tokyo: today in UTC, yesterday in Tokyo.
    await add_run(engine, "90", decided_at=datetime(2030, 1, 9, 14, 0, tzinfo=UTC))
    needs = policy(DAILY).requirement(MOVE, move("20"))
    values = {"account": "10023", "amount": "20"}
    async with engine.connect() as conn:
        in_utc = await over_ceiling(conn, needs, values, now=NOW, tz=UTC_ZONE)
        in_tokyo = await over_ceiling(conn, needs, values, now=NOW, tz=TOKYO)
    assert in_utc is not None and "90 is already used" in in_utc
    assert in_tokyo is None


async def over_ceiling_of(
    engine: AsyncEngine, needs: Requirement, values: dict[str, str]
) -> str | None:
    async with engine.connect() as conn:
        return await over_ceiling(conn, needs, values, now=NOW, tz=TOKYO)


# --- the file ------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "policy.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(PolicyError) as raised:
        load(path, COMMANDS)
    return str(raised.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("rules:\n  - [5]\n", "rule 1: Input should be a valid dictionary or instance of Rule"),
        ("rules:\n  - command: voipcloud move-funds\n", "rule 1: name Field required"),
        (
            "rules:\n  - name: ok\n    command: voipcloud move-funds\n"
            "  - name: bad\n    command: voipcloud move-funds\n"
            "    when: [{field: amount, over: lots}]\n",
            "rule 2 (bad): when.0.over Input should be a valid decimal",
        ),
        ("other: 1\nrules: []\n", "other Extra inputs are not permitted"),
        ("- 1\n", "Input should be a valid dictionary or instance of Policy"),
        (
            "rules:\n  - name: nothing\n    command: nothing like it\n",
            "rule 1 (nothing): `/nothing like it` is not a command",
        ),
        (
            "rules:\n  - name: reads\n    command: voipcloud balance\n",
            "rule 1 (reads): `/voipcloud balance` runs without approval; rules apply to "
            "commands that need one",
        ),
        (
            "rules:\n  - name: ok\n    command: voipcloud move-funds\n"
            "  - name: cap\n    command: voipcloud move-funds\n"
            "    ceiling: {field: amount, max: 5, per: day, by: customer}\n",
            "rule 2 (cap): `/voipcloud move-funds` has no argument `customer` (it has account, "
            "amount, description)",
        ),
        (
            "rules:\n  - name: cap\n    command: voipcloud move-funds\n"
            "    ceiling: {field: sum, max: 5, per: day}\n",
            "rule 1 (cap): `/voipcloud move-funds` has no argument `sum`",
        ),
        ("rules: [\n", "is not valid YML: while parsing a flow node"),
    ],
)
def test_a_bad_file_is_refused_in_one_line_naming_the_rule(
    tmp_path: Path, text: str, said: str
) -> None:
    path = write(tmp_path, text)
    message = refusal(path)
    where = f"BILLING_POLICY_FILE ({path}): "
    assert message.startswith(where)
    assert message.removeprefix(where).startswith(said)
    assert "\n" not in message


def test_a_typo_in_a_command_is_answered_with_the_nearest_one(tmp_path: Path) -> None:
    far = write(tmp_path, "rules:\n  - name: n\n    command: nothing like it\n", "far.yml")
    assert refusal(far) == (
        f"BILLING_POLICY_FILE ({far}): rule 1 (n): `/nothing like it` is not a command"
    )
    message = refusal(write(tmp_path, "rules:\n  - name: t\n    command: voipcloud move-fund\n"))
    assert message.endswith(
        "rule 1 (t): `/voipcloud move-fund` is not a command; did you mean `voipcloud move-funds`?"
    )


def test_a_file_that_cannot_be_read_or_parsed_is_named_with_its_kind(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yml"
    assert refusal(missing) == (
        f"BILLING_POLICY_FILE ({missing}): cannot be read (No such file or directory)"
    )
    toml = write(tmp_path, "[[rules]]\nname = \n", "policy.TOML")
    assert refusal(toml).startswith(f"BILLING_POLICY_FILE ({toml}): is not valid TOML: ")
    bare = write(tmp_path, "rules: [\n", "policy")
    assert refusal(bare).startswith(f"BILLING_POLICY_FILE ({bare}): is not valid YAML: ")


def test_a_ceiling_s_fields_are_checked_besides_the_conditions_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules:\n  - name: cap\n    command: voipcloud move-funds\n"
        "    when: [{field: sum, over: 1}]\n"
        "    ceiling: {field: amount, max: 5, per: day, by: account}\n",
    )
    assert refusal(path).endswith(
        "rule 1 (cap): `/voipcloud move-funds` has no argument `sum` "
        "(it has account, amount, description)"
    )


def test_a_file_is_named_by_its_own_suffix_when_it_is_not_valid(tmp_path: Path) -> None:
    # Any suffix but .toml is read as YAML; the refusal says which kind the name claims.
    odd = write(tmp_path, "rules: [\n", "policy.Xml")
    assert refusal(odd).startswith(f"BILLING_POLICY_FILE ({odd}): is not valid XML: ")


def test_a_policy_file_is_read_as_utf_8_whatever_the_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "rules:\n  - name: größere-beträge\n    command: voipcloud move-funds\n")
    # What `open` uses when no encoding is given, as on a host with an ASCII locale.
    monkeypatch.setattr(io, "text_encoding", lambda encoding, *_: encoding or "ascii")
    assert [r.name for r in load(path, COMMANDS).rules] == ["größere-beträge"]


def test_good_files_load_in_either_format_and_an_empty_one_has_no_rules(tmp_path: Path) -> None:
    toml = write(
        tmp_path,
        '[[rules]]\nname = "cap"\ncommand = "voipcloud move-funds"\n'
        'ceiling = { field = "amount", max = 5, per = "day" }\n',
        "policy.Toml",
    )
    assert [r.name for r in load(toml, COMMANDS).rules] == ["cap"]
    assert load(write(tmp_path, "", "empty.yml"), COMMANDS).rules == []
    yml = write(
        tmp_path,
        "rules:\n  - name: cap\n    command: voipcloud move-funds\n"
        "    when: [{field: account, in: ['1']}]\n"
        "    ceiling: {field: amount, max: 5, per: day, by: account}\n",
    )
    assert [r.name for r in load(yml, COMMANDS).rules] == ["cap"]


def test_the_empty_policy_asks_for_nothing(tmp_path: Path) -> None:
    assert Policy().lines() == []
    assert not Policy().step_up
