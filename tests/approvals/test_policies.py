"""Approval policies: thresholds, several approvals, admin-only approvals and ceilings.

The policy file of the README: a move over 500 needs an admin, over 5,000 two approvals, no
more than a ceiling moved to one customer a day, SMSC invoices over 10,000 need an admin.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from bot.approvals.policy import PolicyError, load
from bot.config import Settings
from bot.messages import when
from bot.runtime import ConfigError, Runtime, open_providers, open_runtime
from bot.slack.blocks import reply_blocks
from bot.storage import store
from bot.storage.store import approvals, audit
from bot.surface import MessageRef
from tests.support import Clock, RecordingSurface, sandbox_of

README_POLICY = """
rules:
  - name: big-move-needs-admin
    command: voipcloud move-funds
    when: [{field: amount, over: 500}]
    approver_role: admin
  - name: huge-move-needs-two
    command: voipcloud move-funds
    when: [{field: amount, over: 5000}]
    approvals: 2
  - name: customer-daily-ceiling
    command: voipcloud move-funds
    ceiling: {field: amount, max: 20000, per: day, by: account}
  - name: big-invoice-needs-admin
    command: smsc invoice create
    when: [{field: sum, over: 10000}]
    approver_role: admin
"""

STEP_UP_RULE = """
  - name: huge-move-needs-a-code-and-why
    command: voipcloud move-funds
    when: [{field: amount, over: 10000}]
    step_up: totp
    reason: required
"""

TWO_APPROVALS = """
rules:
  - name: two-for-any-move
    command: voipcloud move-funds
    approvals: 2
"""

THREE_APPROVALS = """
rules:
  - name: three-for-any-move
    command: voipcloud move-funds
    approvals: 3
"""

SMALL_CEILING = """
[[rules]]
name = "customer-daily-ceiling"
command = "voipcloud move-funds"
ceiling = { field = "amount", max = 100, per = "day", by = "account" }
"""


@pytest.fixture
def open_with_policy(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> Callable[..., Any]:
    async def open_(
        text: str, suffix: str = ".yml", clock: Clock | None = None, **settings: Any
    ) -> Runtime:
        path = tmp_path / f"policy{suffix}"
        path.write_text(text, encoding="utf-8")
        options: dict[str, Any] = {"clock": clock} if clock else {}
        if not database_url.startswith("sqlite"):
            await store.upgrade(database_url)
        runtime = await open_runtime(
            make_settings(billing_policy_file=str(path), **settings),
            system_surface=lambda channel: RecordingSurface(channel=channel, user=""),
            runtimes=open_providers(use_sandboxes=True),
            **options,
        )
        return runtime

    return open_


async def rows(runtime: Runtime, table: sa.Table) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        query = sa.select(table).order_by(*table.primary_key.columns)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


def puts(runtime: Runtime) -> int:
    sandbox = sandbox_of(runtime, "voipcloud")
    return len([r for r in sandbox.control.requests if r.method == "PUT"])


async def request(
    runtime: Runtime, amount: str, account: str = "10023", user: str = "U1"
) -> RecordingSurface:
    surface = RecordingSurface(user=user)
    line = f"/voipcloud move-funds {account} {amount} top-up"
    await runtime.dispatcher.run(line, user=user, channel="C1", surface=surface)
    return surface


async def approve(runtime: Runtime, approval_id: int, user: str) -> RecordingSurface:
    surface = RecordingSurface(user=user)
    await runtime.dispatcher.run(
        f"/billing approve {approval_id}", user=user, channel="C1", surface=surface
    )
    return surface


# --- the file ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "suffix", "said"),
    [
        (
            "rules:\n  - name: typo\n    command: voipcloud move-fund\n",
            ".yml",
            "rule 1 (typo): `/voipcloud move-fund` is not a command; did you mean "
            "`voipcloud move-funds`?",
        ),
        (
            "rules:\n  - name: reads\n    command: voipcloud balance\n",
            ".yml",
            "rule 1 (reads): `/voipcloud balance` runs without approval",
        ),
        (
            "rules:\n  - name: ok\n    command: voipcloud move-funds\n"
            "  - name: bad-field\n    command: voipcloud move-funds\n"
            "    when: [{field: amount_eur, over: 5}]\n",
            ".yml",
            "rule 2 (bad-field): `/voipcloud move-funds` has no argument `amount_eur`",
        ),
        (
            "rules:\n  - name: three\n    command: voipcloud move-funds\n    approvals: 9\n",
            ".yml",
            "rule 1 (three): approvals Input should be less than or equal to 5",
        ),
        ("rules: [\n", ".yaml", "is not valid YAML"),
        ('[[rules]]\nname = "x"\ncommand = \n', ".toml", "is not valid TOML"),
        (
            "rules:\n  - name: role\n    command: voipcloud move-funds\n    approver_role: boss\n",
            ".yml",
            "rule 1 (role): approver_role Input should be 'approver' or 'admin'",
        ),
    ],
)
async def test_a_bad_policy_file_stops_the_start_with_one_line_naming_the_rule(
    open_with_policy: Any, text: str, suffix: str, said: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        await open_with_policy(text, suffix)
    message = str(raised.value)
    assert message.startswith("BILLING_POLICY_FILE (")
    assert said in message
    assert "\n" not in message


def test_the_readme_policy_loads_and_reads_back_in_words(tmp_path: Path) -> None:
    from bot.billing import billing_provider
    from commands.registry import PROVIDERS

    root = Path(__file__).resolve().parents[2]
    example = root / "examples" / "policy.yml"
    readme = (root / "README.md").read_text(encoding="utf-8")
    shown = example.read_text(encoding="utf-8").split("rules:", 1)[1]
    assert "rules:" + shown in readme  # the README shows the example file as it is
    # The tests here use the example's first four rules; its fifth asks for codes and reasons
    # (tests/approvals/test_step_up_approvals.py).
    assert README_POLICY.strip() + STEP_UP_RULE.rstrip() == "rules:" + shown.rstrip()
    commands = [*billing_provider({}).commands, *(c for p in PROVIDERS for c in p.commands)]
    policy = load(example, commands)
    assert [r.name for r in policy.rules] == [
        "big-move-needs-admin",
        "huge-move-needs-two",
        "customer-daily-ceiling",
        "big-invoice-needs-admin",
        "huge-move-needs-a-code-and-why",
    ]
    assert policy.lines()[2] == (
        "• *customer-daily-ceiling*: `/voipcloud move-funds` needs at most 20000 of amount "
        "a day to one account"
    )
    assert policy.lines()[4] == (
        "• *huge-move-needs-a-code-and-why*: `/voipcloud move-funds` when amount over 10000 "
        "needs the approver's authenticator code, a reason"
    )
    assert policy.step_up
    with pytest.raises(PolicyError, match="cannot be read"):
        load(tmp_path / "missing.yml", commands)


async def test_policy_is_shown_with_billing_policy(open_with_policy: Any) -> None:
    runtime = await open_with_policy(README_POLICY)
    try:
        surface = RecordingSurface(user="U0VIEWER")
        await runtime.dispatcher.run(
            "/billing policy", user="U0VIEWER", channel="C1", surface=surface
        )
    finally:
        await runtime.close()
    [reply] = surface.sent
    assert reply.text.startswith("*Approval policy* (4 rules")
    assert (
        "*big-move-needs-admin*: `/voipcloud move-funds` when amount over 500"
        in (reply.sections[0])
    )


# --- thresholds ----------------------------------------------------------------------------------


async def test_a_small_move_needs_one_approver_as_before(open_with_policy: Any) -> None:
    runtime = await open_with_policy(README_POLICY)
    try:
        d = runtime
        requester = await request(d, "100.00")
        fields = dict(requester.sent[0].fields)
        assert fields["Rule"] == "customer-daily-ceiling"  # it counts every move
        assert "Approvals" not in fields
        await approve(d, 1, "U2")
        [row] = await rows(d, approvals)
        assert row["status"] == "done" and puts(d) == 1
    finally:
        await runtime.close()


async def test_a_move_over_500_needs_an_admin(open_with_policy: Any) -> None:
    runtime = await open_with_policy(README_POLICY)
    try:
        d = runtime
        requester = await request(d, "600.00")
        fields = dict(requester.sent[0].fields)
        assert fields["Rule"] == "big-move-needs-admin, customer-daily-ceiling"
        assert fields["Approvals"] == "0 of 1: none yet · admins only"

        approver = await approve(d, 1, "U2")
        assert approver.privates[-1] == (
            "Approval #1 needs an admin's approval (rules: big-move-needs-admin, "
            "customer-daily-ceiling); you are not an admin."
        )
        assert puts(d) == 0
        await approve(d, 1, "U0ADMIN")
        [row] = await rows(d, approvals)
        assert (row["status"], row["decided_by"]) == ("done", "U0ADMIN") and puts(d) == 1
    finally:
        await runtime.close()


async def test_a_move_over_5000_needs_two_admins_each_deciding_once(
    open_with_policy: Any,
) -> None:
    runtime = await open_with_policy(
        README_POLICY, billing_admins="U0ADMIN,U8ADMIN,U9ADMIN", billing_timezone="Asia/Tokyo"
    )
    try:
        d = runtime
        requester = await request(d, "5000.01", user="U0ADMIN")
        assert dict(requester.sent[0].fields)["Rule"] == (
            "big-move-needs-admin, huge-move-needs-two, customer-daily-ceiling"
        )
        own = await approve(d, 1, "U0ADMIN")
        assert "yourself" in own.privates[-1]
        plain = await approve(d, 1, "U2")
        assert "needs an admin's approval" in plain.privates[-1]
        first = await approve(d, 1, "U8ADMIN")
        assert first.sent[-1].text == (
            "Approval #1: 1 of 2 approvals; 1 more approver needed (rules: big-move-needs-admin, "
            "huge-move-needs-two, customer-daily-ceiling)."
        )
        assert first.sent[-1].private
        [(ref, card)] = first.updates
        assert ref == MessageRef("C1", "1.0001") and first.keys[0] == "approval:1"
        assert dict(card.fields)["Approvals"] == "1 of 2: <@U8ADMIN> · admins only"
        [pending] = await rows(d, approvals)
        expires = when(pending["expires_at"], ZoneInfo("Asia/Tokyo"))
        assert expires.endswith("JST") and ("Expires", expires) in card.fields
        again = await approve(d, 1, "U8ADMIN")
        assert again.privates[-1] == (
            "You have already approved #1 (1 of 2: <@U8ADMIN> · admins only); it needs "
            "another approver."
        )
        assert puts(d) == 0
        await approve(d, 1, "U9ADMIN")
        [row] = await rows(d, approvals)
        assert (row["status"], row["decided_by"]) == ("done", "U9ADMIN")
        assert puts(d) == 1
        story = [(r["user_id"], r["decision"], r["outcome"]) for r in await rows(d, audit)]
        steps = [s for s in story if s[1] in {"requested", "approved", "executed"}]
        assert steps == [
            ("U0ADMIN", "requested", "pending"),
            ("U8ADMIN", "approved", "1 of 2"),
            ("U9ADMIN", "approved", "executing"),
            ("U9ADMIN", "executed", "done"),
        ]
    finally:
        await runtime.close()


async def test_two_approvals_clicked_at_once_run_exactly_once(open_with_policy: Any) -> None:
    runtime = await open_with_policy(TWO_APPROVALS)
    try:
        d = runtime
        await request(d, "8.00")
        clicks = [approve(d, 1, user) for user in ("U2", "U3", "U0ADMIN", "U2", "U3")]
        await asyncio.gather(*clicks)
        [row] = await rows(d, approvals)
        assert row["status"] == "done"
        assert puts(d) == 1
    finally:
        await runtime.close()


def headline(card: Any) -> str:
    """The first line of a card as Slack shows it (its first block's text)."""
    text: str = reply_blocks(card)[0]["text"]["text"]
    return text


async def test_every_approver_is_named_in_the_order_they_approved(open_with_policy: Any) -> None:
    clock = Clock(datetime(2030, 1, 6, 9, 0, tzinfo=UTC))
    runtime = await open_with_policy(THREE_APPROVALS, clock=clock)
    try:
        d = runtime
        await request(d, "8.00")
        for user in ("U3", "U0ADMIN"):  # not in the order of their ids
            await approve(d, 1, user)
            clock.advance(minutes=1)
        last = await approve(d, 1, "U2")
        again = await approve(d, 1, "U0APPROVER")
    finally:
        await runtime.close()
    everyone = "<@U3>, <@U0ADMIN> and <@U2>"
    shown = [headline(card) for _, card in last.updates]
    assert f"⏳ #1 approved by {everyone}, running…" in shown
    assert shown[-1] == f"✅ #1 *done* — approved by {everyone}"
    assert (
        again.privates[-1] == f"Approval #1 is already done by {everyone}; nothing was run again."
    )
    assert puts(d) == 1


# --- ceilings ------------------------------------------------------------------------------------


async def test_a_ceiling_refuses_at_request_with_the_rule_and_the_room_left(
    open_with_policy: Any,
) -> None:
    runtime = await open_with_policy(SMALL_CEILING, ".toml")
    try:
        d = runtime
        await request(d, "60.00")
        await approve(d, 1, "U2")
        refused = await request(d, "50.00")
        other = await request(d, "50.00", account="10024")  # another customer has room
        audited = await rows(d, audit)
    finally:
        await runtime.close()
    assert refused.sent == []
    why = (
        "rule customer-daily-ceiling allows at most 100 of amount a day to one account; 60.00 is "
        "already used this day for account 10023, so 50.00 does not fit (40.00 left)"
    )
    assert refused.privates[-1] == f"`/voipcloud move-funds` was not requested: {why}."
    assert other.sent and "Approval needed" in other.sent[0].text
    [row] = [r for r in audited if r["decision"] == "refused"]
    assert (row["user_id"], row["command"], row["provider"]) == (
        "U1",
        "/voipcloud move-funds",
        "voipcloud",
    )
    assert (row["outcome"], row["detail"], row["approval_id"]) == ("over ceiling", why, None)
    assert json.loads(row["args"]) == {
        "account": "10023",
        "amount": "50.00",
        "description": "top-up",
    }


async def test_a_ceiling_is_checked_again_when_the_last_approval_comes(
    open_with_policy: Any,
) -> None:
    runtime = await open_with_policy(SMALL_CEILING, ".toml", billing_timezone="Asia/Tokyo")
    try:
        d = runtime
        await request(d, "60.00")
        await request(d, "60.00")  # both fit when asked: nothing has moved yet
        await approve(d, 1, "U2")
        late = await approve(d, 2, "U3")
        second = (await rows(d, approvals))[1]
        story = [r for r in await rows(d, audit) if r["approval_id"] == 2]
    finally:
        await runtime.close()
    assert puts(d) == 1
    assert second["status"] == "failed"
    assert second["outcome"].startswith("not run: rule customer-daily-ceiling allows")
    assert late.sent[-1].text == f"Approval #2: {second['outcome']}."
    assert late.sent[-1].private
    [(ref, card)] = late.updates
    assert ref == MessageRef("C1", "1.0001") and late.keys[0] == "approval:2"
    assert "*failed*" in card.text and second["outcome"] in card.sections
    assert ("Decided", when(second["decided_at"], ZoneInfo("Asia/Tokyo"))) in card.fields
    assert [(r["user_id"], r["decision"], r["outcome"], r["detail"]) for r in story][-1] == (
        "U3",
        "approved",
        "failed",
        second["outcome"],
    )


async def test_a_ceiling_s_day_is_the_billing_team_s_day(open_with_policy: Any) -> None:
    """23:00 in Tokyo is the day before 01:00 in Tokyo, although both are one UTC day."""
    clock = Clock(datetime(2030, 1, 6, 14, 0, tzinfo=UTC))  # 23:00 JST on the 6th
    runtime = await open_with_policy(
        SMALL_CEILING, ".toml", clock=clock, billing_timezone="Asia/Tokyo"
    )
    try:
        d = runtime
        await request(d, "60.00")
        await approve(d, 1, "U2")
        clock.advance(hours=2)  # 01:00 JST on the 7th: a new day for the ceiling
        asked = await request(d, "60.00")
        await approve(d, 2, "U3")
        statuses = [r["status"] for r in await rows(d, approvals)]
    finally:
        await runtime.close()
    assert asked.sent and "Approval needed" in asked.sent[0].text
    assert statuses == ["done", "done"]
    assert puts(d) == 2


async def test_a_ceiling_holds_across_two_replicas(
    open_with_policy: Any, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite is one process; replicas share PostgreSQL")
    first = await open_with_policy(SMALL_CEILING, ".toml")
    second = await open_with_policy(SMALL_CEILING, ".toml")
    second.approvals.runner = "other-host:1:replica"
    try:
        await request(first, "60.00")
        await request(second, "60.00")
        await asyncio.gather(approve(first, 1, "U2"), approve(second, 2, "U3"))
        statuses = sorted(r["status"] for r in await rows(first, approvals))
        moved = puts(first) + puts(second)
    finally:
        await first.close()
        await second.close()
    assert statuses == ["done", "failed"]
    assert moved == 1
