"""Randomized Slack faults over the approval flow: is anything lost, stranded or doubled?

    .venv/bin/python bench/slack_faults.py --faults 1000 --concurrency 8 --seed 1

Runs the real app (as `billing-bot serve` builds it) on loopback against the Slack Web API
double and the VoIPcloud sandbox, on a throwaway SQLite database (or `--database-url`). Each
round requests a `/voipcloud move-funds` of a distinct amount as one user and approves it as
another; before each step a random Slack method (the card's post, updates, the result's post,
private notes, response_url, a card's link) is made to fail a random number of times — HTTP 429 with
`Retry-After: 0`, or a 500/503 HTML page — until `--faults` faults were injected. When the
outbox has drained it counts, from the channel, the database and the sandbox's request log:

    lost results     approved moves whose result never reached the channel
    stranded rows    approvals not in a final state (pending, executing) after approval
    missing audit    approvals lacking one of requested, approved, executed
    provider calls   transfers sent per approved request (exactly 1 each is right)
    notices          approvers' direct messages (one per approver and request still
                     undecided when they were told) and requesters' (one per decided request)
                     missing or doubled

It prints figures and asserts nothing; run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test doubles live in the repository
    sys.path.insert(0, str(ROOT))

from bot.storage.store import approvals, audit, deliveries  # noqa: E402
from tests.support.e2e import ROLES, Bot, message_text, running_bot, table_rows  # noqa: E402
from tests.support.slack_api import Fault, SlackApiDouble  # noqa: E402

METHODS = [
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "response_url",
    "chat.getPermalink",
]
FAULTS = [Fault(status=429, retry_after=0), Fault(status=500), Fault(status=503)]
ACCOUNT = "10023"


class Chaos:
    """Injects random faults until the budget is spent."""

    def __init__(self, slack: SlackApiDouble, budget: int, rng: random.Random) -> None:
        self.slack = slack
        self.budget = budget
        self.rng = rng
        self.injected: Counter[str] = Counter()

    @property
    def spent(self) -> int:
        return sum(self.injected.values())

    def strike(self) -> None:
        if self.spent >= self.budget:
            return
        method = self.rng.choice(METHODS)
        count = min(self.rng.randint(1, 3), self.budget - self.spent)
        self.slack.inject(method, *(self.rng.choice(FAULTS) for _ in range(count)))
        self.injected[method] += count


def amount_of(n: int) -> Decimal:
    return Decimal("1.00") + Decimal(n) / 100


async def one_round(bot: Bot, n: int, chaos: Chaos, cards: dict[int, str]) -> None:
    amount = amount_of(n)
    chaos.strike()
    await bot.slash("/voipcloud", f"move-funds {ACCOUNT} {amount} round-{n}", user="U1")
    ts = await wait_for_card(bot, f"round-{n}", timeout=60)
    if ts is None:
        return
    cards[n] = ts
    chaos.strike()
    await bot.click(bot.message(ts), "Approve", user="U2")


async def wait_for_card(bot: Bot, marker: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for (_, ts), message in list(bot.slack.messages.items()):
            text = message_text(message)
            if "Approval needed" in text and marker in text:
                return ts
        await asyncio.sleep(0.02)
    return None


async def drained(bot: Bot, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        rows = await table_rows(bot.database_url, deliveries)
        rows_waiting = [r for r in rows if r["status"] in ("pending", "sending")]
        runs = await table_rows(bot.database_url, approvals)
        running = [r for r in runs if r["status"] in ("executing",)]
        if not rows_waiting and not running:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    slack = SlackApiDouble()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        async with running_bot(url, slack=slack) as bot:
            chaos = Chaos(slack, args.faults, rng)
            cards: dict[int, str] = {}
            started = time.monotonic()
            n = 0
            while chaos.spent < args.faults:
                batch = range(n, n + args.concurrency)
                await asyncio.gather(*(one_round(bot, i, chaos, cards) for i in batch))
                n += args.concurrency
            slack.faults.clear()
            settle = await drained(bot, timeout=120)
            elapsed = time.monotonic() - started
            await report(bot, n, cards, chaos, elapsed, settle)


async def report(
    bot: Bot, rounds: int, cards: dict[int, str], chaos: Chaos, elapsed: float, settle: float
) -> None:
    rows = {r["id"]: r for r in await table_rows(bot.database_url, approvals)}
    story = Counter(
        (r["approval_id"], r["decision"])
        for r in await table_rows(bot.database_url, audit)
        if r["approval_id"] is not None
    )
    waiting = [
        r
        for r in await table_rows(bot.database_url, deliveries)
        if r["status"] in ("pending", "sending", "dead")
    ]
    results: Counter[str] = Counter()
    for message in bot.slack.messages.values():
        text = str(message.get("text", ""))
        if text.startswith("Funds moved"):
            results[text] += 1
    sent: Counter[int] = Counter()
    for request in bot.voipcloud.control.requests:
        if request.method == "PUT":
            body = request.body.decode(errors="replace")
            for n in range(rounds):
                if f"round-{n}\r\n" in body:
                    sent[n] += 1
    by_round = {str(r["args"]): r for r in rows.values()}
    approved = [r for r in rows.values() if r["decided_by"] is not None]
    stranded = [r for r in approved if r["status"] not in ("done", "failed", "unknown")]
    missing_audit = [
        r
        for r in approved
        if not all(story[(r["id"], d)] for d in ("requested", "approved", "executed"))
    ]
    lost = []
    for n in cards:
        amount = amount_of(n)
        expected = f"Funds moved, partner → customer {ACCOUNT}: {amount:.2f}."
        row = next((r for k, r in by_round.items() if f"round-{n}" in k), None)
        if row is not None and row["status"] == "done" and results[expected] < 1:
            lost.append(n)
    doubled = [n for n, count in sent.items() if count > 1]
    per_request = Counter(sent[n] for n in cards)
    statuses = Counter(r["status"] for r in rows.values())
    print(f"rounds                {rounds} ({len(cards)} cards reached the channel)")
    print(f"faults injected       {chaos.spent} ({dict(sorted(chaos.injected.items()))})")
    print(f"approvals by status   {dict(sorted(statuses.items()))}")
    print(f"run time              {elapsed:.1f} s (outbox drained {settle:.1f} s after the last)")
    print(f"deliveries left       {len(waiting)} (pending, sending or given up)")
    print(f"lost results          {len(lost)}")
    print(f"stranded rows         {len(stranded)}")
    print(f"missing audit rows    {len(missing_audit)}")
    print(f"provider calls        {dict(sorted(per_request.items()))} (calls per request: count)")
    print(f"doubled transfers     {len(doubled)}")
    notices(bot, rows)


def notices(bot: Bot, rows: dict[int, dict[str, object]]) -> None:
    """Direct messages: one per approver and request, one per decided request to U1."""
    approvers = [*ROLES["BILLING_APPROVERS"].split(","), *ROLES["BILLING_ADMINS"].split(",")]
    asked: Counter[tuple[int, str]] = Counter()
    told: Counter[int] = Counter()
    for (channel, _), message in list(bot.slack.messages.items()):
        text = str(message.get("text", ""))
        if not channel.startswith("D"):
            continue
        if found := re.match(r"🔐 <@U1> asks for an approval: #(\d+)", text):
            asked[(int(found[1]), "U" + channel[1:])] += 1
        elif found := re.match(r"\S+ Your request #(\d+)", text):
            told[int(found[1])] += 1
    # A request approved before its approvers were told (within milliseconds, here) is not
    # announced to them at all: it needs nobody any more.
    announced = [n for n, r in rows.items() if r["notified_at"] is not None]
    expected = [(n, user) for n in announced for user in approvers]
    decided = [n for n, r in rows.items() if r["status"] not in ("pending", "executing")]
    missing = len([k for k in expected if asked[k] == 0])
    twice = len([k for k in expected if asked[k] > 1])
    unasked = len([k for k in asked if k[0] not in announced])
    print(
        f"approvers' messages   {len(expected)} due ({len(announced)} requests announced), "
        f"{missing} missing, {twice} doubled, {unasked} for requests decided first"
    )
    missing = len([n for n in decided if told[n] == 0])
    twice = len([n for n in decided if told[n] > 1])
    print(f"requesters' messages  {len(decided)} due, {missing} missing, {twice} doubled")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", default=None)
    asyncio.run(main(parser.parse_args()))
