"""Audit anchors end to end over loopback: `/billing audit anchor` posts the head to the billing
channel with `billing_audit_anchor` metadata (a 429 delays it, never loses it), and
`billing-bot audit verify --anchors` reads the anchors back with conversations.history (every
page, through a 429) and catches the whole chain rewritten after an anchor, which plain
`audit verify` cannot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.storage import store
from bot.storage.chain import Link, seal
from bot.storage.store import audit, audit_anchors
from tests.support.e2e import CHANNEL, Bot, running_bot, table_rows, wait_until
from tests.support.slack_api import BOT_TOKEN, Fault, SlackApiDouble, serve_slack_double

EVENT = "billing_audit_anchor"


async def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    """`billing-bot audit verify …` as run from a shell, with the environment the bot has."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["audit", "verify", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def anchor_messages(slack: SlackApiDouble) -> list[dict[str, Any]]:
    return [
        m
        for (channel, _), m in sorted(slack.messages.items())
        if channel == CHANNEL and (m.get("metadata") or {}).get("event_type") == EVENT
    ]


async def anchored(bot: Bot, user: str = "U2") -> str:
    """Runs `/billing audit anchor`; the answer, once the command's own audit row is written."""
    rows = len(await table_rows(bot.database_url, audit))
    sent = await bot.slash("/billing", "audit anchor", user=user)
    answer = await bot.private(sent.respond, containing="Anchored the audit log at row")

    async def recorded() -> bool:  # the anchor's row and the command's
        return len(await table_rows(bot.database_url, audit)) == rows + 2

    await wait_until(recorded, "the anchor's audit rows")
    return answer


async def commands(bot: Bot, count: int) -> None:
    """`count` commands that leave an audit row each."""
    for n in range(count):
        sent = await bot.slash("/billing", "policy", user="U1")
        await bot.private(sent.respond, containing="No approval policy")

        async def written(expected: int = n + 1) -> bool:
            return len(await table_rows(bot.database_url, audit)) >= expected

        await wait_until(written, "the command's audit row")


async def rewrite_from(database_url: str, seq: int) -> None:
    """What someone with the database would do to hide an edit: change row `seq`, recompute
    every hash from there on (the chain is whole again), and make the anchors table agree."""
    engine = store.make_engine(database_url)
    try:
        async with engine.begin() as conn:
            rows = [
                dict(r)
                for r in (await conn.execute(sa.select(audit).order_by(audit.c.seq))).mappings()
            ]
            head = Link(rows[seq - 2]["seq"], rows[seq - 2]["hash"]) if seq > 1 else None
            forged: dict[str, str] = {}
            for row in rows[seq - 1 :]:
                if row["seq"] == seq:
                    row["detail"] = "nothing happened"
                links = seal(row, head)
                forged[row["hash"]] = links["hash"]
                await conn.execute(
                    audit.update()
                    .where(audit.c.id == row["id"])
                    .values(detail=row["detail"], **links)
                )
                head = Link(links["seq"], links["hash"])
            for old, new in forged.items():
                await conn.execute(
                    audit_anchors.update().where(audit_anchors.c.hash == old).values(hash=new)
                )
    finally:
        await engine.dispose()


async def test_a_rate_limited_anchor_arrives_and_verify_catches_the_chain_rewritten_after_it(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_bot(database_url) as bot:
        await commands(bot, 3)
        bot.slack.inject("chat.postMessage", Fault(429, retry_after=1))
        answer = await anchored(bot)
        await wait_until(lambda: anchor_messages(bot.slack), "the anchor in the channel", 15)
        [message] = anchor_messages(bot.slack)

        async def landed() -> bool:  # the outbox says where it landed, late
            [kept] = await table_rows(database_url, audit_anchors)
            return bool(kept["ts"] == message["ts"])

        await wait_until(landed, "the anchor's ts kept")
        [kept] = await table_rows(database_url, audit_anchors)
        rows = await table_rows(database_url, audit)
        intact = await verify(capsys, "--anchors")
        plain_before = await verify(capsys)

        await rewrite_from(database_url, 2)
        plain_after = await verify(capsys)
        caught = await verify(capsys, "--anchors")

    third = next(r for r in rows if r["seq"] == 3)
    assert [c.status for c in bot.slack.calls_to("chat.postMessage")][-2:] == [429, 200]
    assert answer == (
        f"Anchored the audit log at row 3, hash `{third['hash']}`; posted to <#{CHANNEL}>."
    )
    assert message["bot_id"] and message["metadata"] == {
        "event_type": EVENT,
        "event_payload": {
            "seq": "3",
            "hash": third["hash"],
            "how": "command",
            "at": kept["at"].isoformat(),
        },
    }
    assert (kept["seq"], kept["hash"], kept["by"], kept["how"]) == (
        3,
        third["hash"],
        "U2",
        "command",
    )
    [history] = bot.slack.calls_to("conversations.history")[:1]
    assert history.params["include_all_metadata"] in ("1", "true")
    assert intact[0] == 0 and intact[1][0] == f"anchors: 1 in {CHANNEL}, 1 kept in the database"
    assert intact[1][1].startswith("intact: 5 rows, head 5 ") and len(intact[1]) == 2
    assert plain_before[:2] == (0, [intact[1][1]])
    # Rewritten from row 2 with every hash recomputed: whole in itself, and the table agrees.
    assert plain_after[0] == 0 and plain_after[1][0].startswith("intact: 5 rows, head 5 ")
    assert caught[0] == 1
    assert caught[1] == [
        f"anchors: 1 in {CHANNEL}, 1 kept in the database",
        f"the anchor of row 3 in the channel (message {message['ts']}) is not in the anchors table",
        f"the anchor of row 3 kept in the table (message {message['ts']}) is not in the channel",
        "row 3: edited (its hash is not the anchored one: rewritten from here)",
    ]


async def test_verify_reads_every_page_of_the_channel_through_a_429_and_only_the_bot_s_anchors(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_bot(database_url) as bot:
        await commands(bot, 1)
        await anchored(bot)
        await anchored(bot, user="U3")
        await wait_until(lambda: len(anchor_messages(bot.slack)) == 2, "both anchors posted")
        bot.slack.add_message(  # another app posting the same event type: not an anchor
            CHANNEL,
            {
                "bot_id": "B0OTHERAPP",
                "metadata": {"event_type": EVENT, "event_payload": {"seq": "1", "hash": "0" * 64}},
            },
        )
        for n in range(450):  # the anchors end up on the third page, newest first
            bot.slack.add_message(CHANNEL, {"user": "U1", "text": f"chat {n}"})
        bot.slack.inject("conversations.history", Fault(429, retry_after=1))
        code, lines, _ = await verify(capsys, "--anchors")

    history = bot.slack.calls_to("conversations.history")
    assert code == 0
    assert lines[:2] == [
        f"anchors: 2 in {CHANNEL}, 2 kept in the database",
        "1 message of the same event type posted by another app or a person ignored",
    ]
    assert lines[2].startswith("intact: 5 rows, head 5 ")
    assert [c.status for c in history] == [429, 200, 200, 200]
    assert [c.params.get("cursor") for c in history[1:]] == [None, "200", "400"]
    assert all(c.params["limit"] == "200" for c in history)


def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **variables: str) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    "variables",
    [{}, {"SLACK_BOT_TOKEN": BOT_TOKEN}, {"BILLING_CHANNEL": CHANNEL}],
    ids=["neither", "no-channel", "no-token"],
)
def test_verify_anchors_without_slack_or_the_channel_says_what_it_needs(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variables: dict[str, str],
) -> None:
    cli_environment(monkeypatch, tmp_path, **variables)
    assert main(["audit", "verify", "--anchors"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "audit verify --anchors reads the anchors back from the billing channel: set "
        "SLACK_BOT_TOKEN and BILLING_CHANNEL\n"
    )


@pytest.mark.parametrize(
    ("double", "said"),
    [
        (
            SlackApiDouble(scopes={"chat:write", "groups:history"}),
            "Slack said missing_scope (the bot token needs channels:history, or groups:history "
            "for a private channel: add them as in manifest.yml and reinstall the app)",
        ),
        (
            SlackApiDouble(not_in_channel={CHANNEL}),
            "Slack said not_in_channel (invite the bot: /invite @billing-bot)",
        ),
    ],
    ids=["missing-scope", "not-in-channel"],
)
async def test_verify_anchors_says_why_slack_refused_the_history(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    double: SlackApiDouble,
    said: str,
) -> None:
    async with serve_slack_double(double) as slack:
        cli_environment(
            monkeypatch,
            tmp_path,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_API_URL=slack.url,
            BILLING_CHANNEL=CHANNEL,
        )
        code, lines, err = await verify(capsys, "--anchors")
    assert (code, lines) == (2, [])
    assert err == f"could not read the anchors in BILLING_CHANNEL {CHANNEL}: {said}\n"
