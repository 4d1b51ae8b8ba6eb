"""What an approval costs the database, and how long it takes beside the provider's own time.

    .venv/bin/python bench/approval_cost.py --postgresql "$TEST_DATABASE_URL"
    .venv/bin/python bench/approval_cost.py --concurrency 20 --rounds 3 --profile
    .venv/bin/python bench/approval_cost.py --clicks-together     # the click path alone
    git worktree add --detach ../ref <commit>                  # before and after, in one run:
    .venv/bin/python bench/approval_cost.py --postgresql "$TEST_DATABASE_URL" --reference ../ref

Starts, on loopback: the Slack Web API double and the VoIPcloud sandbox, whose every answer
takes `--provider-ms` (50) milliseconds (both in threads of this process). Then, for each
database (a fresh SQLite file; with `--postgresql URL` also a fresh PostgreSQL database made
beside URL's, migrated with `billing-bot db upgrade`, dropped at the end) and each number of
replicas (one; two on PostgreSQL, since SQLite serves one process), it runs the real app:
`billing-bot serve` processes (bench/counted_serve.py, which counts the statements they send)
sharing that database. With `--reference PATH` (a checkout of another revision, e.g. main
before a change) that revision runs too, on a database of its own, as ack_latency.py runs it
(`PYTHONPATH=PATH`, checked before it starts), and rounds alternate between the two.

A round is `--concurrency` approvals at once, each as Slack would send it: a signed
`/voipcloud move-funds 10023 <amount> bench-<n>` from an operator, then, once its card is in
the channel and the approver has its direct message (so every approval tells its approvers,
as it does when nobody clicks within a second), that approver's signed click on Approve (with
two replicas, the command goes to one and the click to the other); with `--clicks-together`,
the clicks wait until every card of the round is out and the outbox has drained, then all go
at once, so click-to-done measures the approval path alone, not interleaved with other
requests' cards. An approval is done when its card reads *done* and the result ("Funds moved
…") is posted; both are seen as the Slack double receives them. Between rounds the outbox
drains (no delivery pending or sending: the approvers' and the requester's direct messages are
sent too); before the statements are counted, at the start and at the end, it also settles (no
new delivery for 0.5 s), so rows written after a result is posted are not missed.

For each database, replicas and revision it prints: click-to-done p50 and p99 (from sending
the click to the later of the two), the overhead over the provider's time (click-to-done less
`--provider-ms`), and per approval, from request to drained outbox: statements (reads =
SELECT, writes = INSERT/UPDATE/DELETE, other), transactions, commits, and round trips as they
are made (PostgreSQL: asyncpg's writes to its sockets, BEGIN, COMMIT, ROLLBACK and pings
included; SQLite: calls handed to aiosqlite's thread),
connections opened, and the CPU time of the bot's processes (every thread); with
`--clicks-together` also that CPU time from the first click to the drained outbox ("click
cpu"). The CPU time tells whether the overhead is work or waiting: when 20 approvals' CPU time
adds up to the round's click-to-done, the event loop is busy all along and nothing but less
work per approval shortens the wait. Background work (the outbox worker's pass every 2 s, the
scheduler's tick) is counted in, as it runs. Approvals/s is a round's approvals over its time
from the first command to the last approval done. `--profile` adds the statements of one
approval grouped by shape, for each revision on the first database.

It prints figures and asserts nothing; run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test doubles live in the repository
    sys.path.insert(0, str(ROOT))

from bot.storage.store import async_url  # noqa: E402
from commands.voipcloud.sandbox import VoipcloudSandbox  # noqa: E402
from tests.support.e2e import (  # noqa: E402
    SlackSender,
    bot_environment,
    message_text,
    voipcloud_env,
)
from tests.support.ports import free_port  # noqa: E402
from tests.support.server import serve_asgi  # noqa: E402
from tests.support.slack_api import SlackApiDouble, serve_slack_double  # noqa: E402

REQUESTER = "U1"  # an operator in tests.support.e2e.ROLES
APPROVER = "U2"  # an approver there
DIRECT = "D2"  # the bot's direct messages with APPROVER, as the Slack double names them
ACCOUNT = "10023"
READY_TIMEOUT = 60.0
ROUND_TIMEOUT = 120.0
SETTLE = 0.5
COUNTER = ROOT / "bench" / "counted_serve.py"
RESULT = re.compile(r"Funds moved, partner → customer \d+: (-?[\d.,]+)\.")
KINDS = ("reads", "writes", "other")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def amount_of(serial: int) -> Decimal:
    """A distinct amount per approval, so its result message names it."""
    return Decimal("0.01") * serial


# --- what Slack saw, and when ------------------------------------------------------------------


@dataclass
class Seen:
    card_ts: str | None = None
    card_at: float | None = None
    told_at: float | None = None  # the approver's direct message
    done_at: float | None = None
    result_at: float | None = None


class Watched(SlackApiDouble):
    """The Slack double, noting when each approval's card, its *done* and its result arrive.

    It runs in the double's thread; each change wakes the bench's loop (`changed`), which reads
    `seen` (no polling: 20 approvals polling every few ms would take the CPU they measure)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.changed = asyncio.Event()
        self.seen: dict[int, Seen] = {}
        self.cards: dict[str, int] = {}  # card ts → serial
        self.serials = itertools.count(1)  # one per approval, across every setting

    def watch(self, serial: int) -> Seen:
        return self.seen.setdefault(serial, Seen())

    def _wake(self) -> None:
        """In the bench's loop: wake whoever waits, and give later waiters a fresh event."""
        self.changed.set()
        self.changed = asyncio.Event()

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = super()._post_message(params)
        now = time.perf_counter()
        message = self.messages.get((answer["channel"], answer["ts"]), {})
        text = message_text(message)
        if "Approval needed" in text and (found := re.search(r"bench-(\d+)\b", text)):
            serial = int(found[1])
            self.cards[answer["ts"]] = serial
            seen = self.watch(serial)
            seen.card_ts, seen.card_at = answer["ts"], now
            self.loop.call_soon_threadsafe(self._wake)
        elif answer["channel"] == DIRECT and "asks for an approval" in text:
            if found := re.search(r"bench-(\d+)\b", text):
                self.watch(int(found[1])).told_at = now
                self.loop.call_soon_threadsafe(self._wake)
        elif found := RESULT.search(str(message.get("text", ""))):
            serial = int(Decimal(found[1].replace(",", "")) / Decimal("0.01"))
            self.watch(serial).result_at = now
            self.loop.call_soon_threadsafe(self._wake)
        return answer

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = super()._update(params)
        serial = self.cards.get(str(answer["ts"]))
        if serial is not None:
            text = message_text(self.messages.get((answer["channel"], answer["ts"]), {}))
            if "*done*" in text:
                self.watch(serial).done_at = time.perf_counter()
                self.loop.call_soon_threadsafe(self._wake)
        return answer


# --- the app, counted --------------------------------------------------------------------------


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    url: str
    counts: Path
    log: Path

    def snapshot(self) -> dict[str, Any]:
        return dict(json.loads(self.counts.read_text()))


@dataclass
class Target:
    """One revision of the bot: this tree (`bot`) or the reference (`ref`)."""

    name: str
    checkout: Path
    floor: bool = False  # bench/bare_approval.py, not the bot: no database, the same calls

    def environment(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.checkout)}

    def command(self) -> list[str]:
        return ["bare-approval"] if self.floor else ["serve"]


def origin(target: Target) -> str:
    """Where the target's `bot` and `commands` import from; fails unless its checkout."""
    probe = "import bot, commands; print(bot.__file__); print(commands.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **target.environment()},
        cwd=target.checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    files = [Path(line).resolve() for line in found.stdout.split()]
    if found.returncode != 0 or len(files) != 2:
        raise RuntimeError(f"{target.name} does not import:\n{found.stderr}")
    for file in files:
        if not file.is_relative_to(target.checkout):
            raise RuntimeError(f"{target.name} imports {file}, not from {target.checkout}")
    revision = subprocess.run(
        ["git", "-C", str(target.checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{target.checkout}" + (f" at {revision}" if revision else "")


async def start_replica(
    name: str, environment: dict[str, str], target: Target, workdir: Path
) -> Replica:
    port = free_port()
    counts = workdir / f"{name}.counts.json"
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(COUNTER), str(counts), *target.command(), "--host", "127.0.0.1"],
            env={**os.environ, **environment, **target.environment(), "PORT": str(port)},
            cwd=target.checkout,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(process, f"http://127.0.0.1:{port}", counts, log)
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{replica.url}/readyz")).status_code == 200:
                    return replica
            if time.monotonic() > deadline:
                await stop(replica)
                raise RuntimeError(f"{name} not ready within {READY_TIMEOUT} s")
            await asyncio.sleep(0.05)


async def stop(replica: Replica) -> None:
    if replica.process.poll() is None:
        replica.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(replica.process.wait, 30)
    except subprocess.TimeoutExpired:
        replica.process.kill()
        await asyncio.to_thread(replica.process.wait, 10)


async def counted(replicas: Sequence[Replica]) -> tuple[Counter[str], Counter[str]]:
    """What every replica counted so far: (counts, statement shapes)."""
    before = {id(r): r.counts.stat().st_mtime_ns for r in replicas}
    for replica in replicas:
        replica.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while any(r.counts.stat().st_mtime_ns == before[id(r)] for r in replicas):
        if time.monotonic() > deadline:
            raise RuntimeError("a replica did not write its counts")
        await asyncio.sleep(0.01)
    counts: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    for replica in replicas:
        data = replica.snapshot()
        counts.update(data["counts"])
        shapes.update(data["shapes"])
    return counts, shapes


# --- databases ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_postgres(base: str) -> AsyncIterator[str]:
    """A throwaway database beside `base`'s, as the tests make them."""
    url = async_url(base)
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_{uuid.uuid4().hex[:12]}"

    async def run(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    await run(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        await run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def upgrade(environment: dict[str, str], target: Target) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", "db", "upgrade"],
        env={**os.environ, **environment, **target.environment()},
        cwd=target.checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{target.name}: db upgrade failed:\n{done.stdout}\n{done.stderr}")


async def deliveries_of(database_url: str) -> tuple[int, int]:
    """(rows waiting: pending or sending, rows in all)."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            query = (
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')), count(*)"
                " FROM deliveries"
            )
            waiting, rows = (await conn.execute(sa.text(query))).one()
            return int(waiting), int(rows)
    finally:
        await engine.dispose()


# --- one deployment: a revision's replicas on one database -------------------------------------


@dataclass
class Figures:
    click_to_done_ms: list[float] = field(default_factory=list)
    click_cpu_ms: float = 0.0  # --clicks-together: the bot's CPU from first click to drained
    rates: list[float] = field(default_factory=list)
    approvals: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    shapes: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0
    slack: Counter[str] = field(default_factory=Counter)  # Slack calls by method, measured rounds


@dataclass
class Deployment:
    target: Target
    database: str
    database_url: str
    replicas: list[Replica]
    senders: list[SlackSender]
    figures: Figures = field(default_factory=Figures)


class Gate:
    """Holds each approval's click until `expected` approvals got their card, then runs `last`
    (in the last to arrive) and lets every click go."""

    def __init__(self, expected: int, last: Callable[[], Awaitable[None]]) -> None:
        self.expected = expected
        self.last = last
        self.arrived = 0
        self.open = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived == self.expected:
            await self.last()
            self.open.set()
        await self.open.wait()


class Bench:
    def __init__(self, slack: Watched, http: httpx.AsyncClient, *, together: bool) -> None:
        self.slack = slack
        self.http = http
        self.together = together

    async def approval(
        self, deployment: Deployment, n: int, carded: Gate | None = None
    ) -> tuple[Seen, float]:
        """One approval, request to done; returns what Slack saw and when the click went.
        With `carded`, the click waits at it until every approval of the round got so far."""
        serial = next(self.slack.serials)
        seen = self.slack.watch(serial)
        senders = deployment.senders
        asking, clicking = senders[n % len(senders)], senders[(n + 1) % len(senders)]
        text = f"move-funds {ACCOUNT} {amount_of(serial)} bench-{serial}"
        await asking.slash("/voipcloud", text, user=REQUESTER)
        await self.until(
            lambda: seen.card_ts is not None and seen.told_at is not None,
            f"card of bench-{serial} and its approver told",
        )
        assert seen.card_ts is not None
        card = asking.message(seen.card_ts)
        if carded is not None:
            await carded.wait()
        clicked = time.perf_counter()
        try:
            answer = await clicking.click(card, "Approve", user=APPROVER)
        except httpx.TransportError as exc:  # which process dropped it, and what it logged
            replica = next(r for r in deployment.replicas if r.url == clicking.url)
            tail = "".join(replica.log.read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(
                f"{deployment.target.name} on {deployment.database}: the click on bench-{serial}"
                f" to {replica.url} failed ({exc!r}); the end of {replica.log.name}:\n{tail}"
            ) from exc
        if answer.answer.status_code != 200:
            raise RuntimeError(f"the click on bench-{serial} got {answer.answer.status_code}")
        await self.until(
            lambda: seen.done_at is not None and seen.result_at is not None,
            f"bench-{serial} done and its result posted",
        )
        return seen, clicked

    async def until(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + ROUND_TIMEOUT
        while not condition():
            changed = self.slack.changed  # taken before the check: a later change sets it
            if condition():
                return
            if (left := deadline - time.monotonic()) <= 0:
                raise RuntimeError(f"no {what} within {ROUND_TIMEOUT} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def drained(self, deployment: Deployment) -> int:
        """Waits until no delivery is pending or sending; returns the rows written so far.
        The floor has no outbox: until none of its requests is still making calls; returns
        the Slack calls made so far."""
        deadline = time.monotonic() + ROUND_TIMEOUT
        while True:
            if deployment.target.floor:
                answers = [await self.http.get(f"{r.url}/pending") for r in deployment.replicas]
                waiting = sum(int(a.json()["pending"]) for a in answers)
                rows = len(self.slack.calls)
            else:
                waiting, rows = await deliveries_of(deployment.database_url)
            if not waiting:
                return rows
            if time.monotonic() > deadline:
                raise RuntimeError(f"{deployment.target.name}: the outbox did not drain")
            await asyncio.sleep(0.05)

    async def settled(self, deployment: Deployment) -> None:
        """Drained, and no row written for `SETTLE` s: what an approval still writes once its
        result is posted (the requester's notice) is counted with it, not with the next."""
        rows = await self.drained(deployment)
        while True:
            await asyncio.sleep(SETTLE)
            if (now := await self.drained(deployment)) == rows:
                return
            rows = now

    async def round(self, deployment: Deployment, concurrency: int, *, measured: bool) -> None:
        started = time.perf_counter()
        carded = None
        cpu_before: list[float] = []
        if self.together:

            async def drained_then_click() -> None:  # run by the last approval to arrive
                await self.drained(deployment)
                cpu_before.append((await counted(deployment.replicas))[0]["cpu_ms"])

            carded = Gate(concurrency, drained_then_click)
        results = await asyncio.gather(
            *(self.approval(deployment, n, carded) for n in range(concurrency))
        )
        ended = max(max(seen.done_at or 0, seen.result_at or 0) for seen, _ in results)
        await self.drained(deployment)
        if not measured:
            return
        figures = deployment.figures
        if cpu_before:
            figures.click_cpu_ms += (await counted(deployment.replicas))[0]["cpu_ms"] - cpu_before[
                0
            ]
        figures.approvals += concurrency
        figures.rates.append(concurrency / (ended - started))
        for seen, clicked in results:
            done = max(seen.done_at or 0, seen.result_at or 0)
            figures.click_to_done_ms.append((done - clicked) * 1000)


@contextlib.asynccontextmanager
async def deployed(
    target: Target,
    database: str,
    count: int,
    *,
    slack: SlackApiDouble,
    providers: dict[str, str],
    postgresql: str | None,
    workdir: Path,
    http: httpx.AsyncClient,
) -> AsyncIterator[Deployment]:
    async with contextlib.AsyncExitStack() as stack:
        if target.floor:
            url = f"sqlite:///{workdir / 'floor-unused.db'}"  # bot_environment wants one
        elif database == "postgresql":
            assert postgresql is not None
            url = await stack.enter_async_context(fresh_postgres(postgresql))
        else:
            url = f"sqlite:///{workdir / f'{target.name}-{count}.db'}"
        environment = bot_environment(database_url=url, slack=slack, providers=providers)
        if database == "postgresql" and not target.floor:
            await upgrade(environment, target)
        replicas: list[Replica] = []
        stack.push_async_callback(lambda: asyncio.gather(*(stop(r) for r in replicas)))
        for n in range(count):  # one after the other: SQLite migrates as the first starts
            name = f"{target.name}-{database}-{count}-{n + 1}"
            replicas.append(await start_replica(name, environment, target, workdir))
        senders = [SlackSender(slack=slack, url=r.url, http=http) for r in replicas]
        yield Deployment(target, "none" if target.floor else database, url, replicas, senders)


async def measure(
    targets: Sequence[Target],
    database: str,
    count: int,
    args: argparse.Namespace,
    *,
    slack: Watched,
    providers: dict[str, str],
    workdir: Path,
    http: httpx.AsyncClient,
) -> list[Deployment]:
    bench = Bench(slack, http, together=args.clicks_together)
    async with contextlib.AsyncExitStack() as stack:
        deployments = [
            await stack.enter_async_context(
                deployed(
                    target,
                    database,
                    count,
                    slack=slack,
                    providers=providers,
                    postgresql=args.postgresql,
                    workdir=workdir,
                    http=http,
                )
            )
            for target in targets
        ]
        for deployment in deployments:  # first requests warm caches, connections, Bolt
            await bench.round(deployment, max(2, count), measured=False)
        starts = {}
        for deployment in deployments:
            await bench.settled(deployment)
            starts[deployment.target.name] = await counted(deployment.replicas)
        for n in range(args.rounds):
            shift = n % len(deployments)
            for deployment in [*deployments[shift:], *deployments[:shift]]:
                calls = len(slack.calls)
                await bench.round(deployment, args.concurrency, measured=True)
                await bench.settled(deployment)  # its last notices are its round's calls
                methods = Counter(f"slack {c.method}" for c in list(slack.calls)[calls:])
                deployment.figures.slack += methods
        for deployment in deployments:
            await bench.settled(deployment)
            counts, shapes = await counted(deployment.replicas)
            before_counts, before_shapes = starts[deployment.target.name]
            deployment.figures.counts = counts - before_counts
            deployment.figures.shapes = shapes - before_shapes
    return deployments


# --- the report --------------------------------------------------------------------------------


def per(figures: Figures, name: str) -> float:
    return figures.counts[name] / max(1, figures.approvals)


def round_trips(figures: Figures) -> float:
    return per(figures, "round_trips")


def report(deployments: Sequence[Deployment], provider_ms: float) -> None:
    header = (
        f"{'database':<10} {'repl':>4} {'rev':<5} {'click→done p50/p99 ms':>22} "
        f"{'overhead p50/p99 ms':>20} {'stmts':>6} {'reads':>6} {'writes':>6} {'other':>6} "
        f"{'txns':>5} {'commits':>7} {'trips':>6} {'conns':>5} {'appr/s':>7} {'cpu ms':>6} "
        f"{'click cpu':>9}"
    )
    print(header)
    print("-" * len(header))
    for d in deployments:
        f = d.figures
        p50 = percentile(f.click_to_done_ms, 0.50)
        p99 = percentile(f.click_to_done_ms, 0.99)
        rate = sorted(f.rates)[len(f.rates) // 2]
        print(
            f"{d.database:<10} {len(d.replicas):>4} {d.target.name:<5} "
            f"{p50:>10.1f} / {p99:>8.1f} {p50 - provider_ms:>9.1f} / {p99 - provider_ms:>8.1f} "
            f"{per(f, 'statements'):>6.1f} "
            + " ".join(f"{per(f, kind):>6.1f}" for kind in KINDS)
            + f" {per(f, 'transactions'):>5.1f} {per(f, 'commits'):>7.1f} "
            f"{round_trips(f):>6.1f} {per(f, 'connects'):>5.2f} {rate:>7.1f} "
            f"{per(f, 'cpu_ms'):>6.1f} "
            + (f"{f.click_cpu_ms / max(1, f.approvals):>9.1f}" if f.click_cpu_ms else f"{'-':>9}")
        )
    by_setting: dict[tuple[str, int], dict[str, Figures]] = {}
    for d in deployments:
        by_setting.setdefault((d.database, len(d.replicas)), {})[d.target.name] = d.figures
    for (database, count), figures in by_setting.items():
        if "bot" in figures and "ref" in figures:
            bot, ref = figures["bot"], figures["ref"]
            print(
                f"bot/ref on {database}, {count} replica(s): statements "
                f"×{per(bot, 'statements') / max(per(ref, 'statements'), 1e-9):.2f}, round trips "
                f"×{round_trips(bot) / max(round_trips(ref), 1e-9):.2f}, overhead p50 "
                f"×{ratio(bot, ref, 0.50, provider_ms):.2f}, p99 "
                f"×{ratio(bot, ref, 0.99, provider_ms):.2f}"
            )
    floors = [d.figures for d in deployments if d.target.floor]
    for d in deployments:
        if floors and not d.target.floor:
            f, floor = d.figures, floors[0]
            print(
                f"{d.target.name}/floor on {d.database}, {len(d.replicas)} replica(s): "
                f"overhead p50 "
                f"×{ratio(f, floor, 0.50, provider_ms):.2f}, p99 "
                f"×{ratio(f, floor, 0.99, provider_ms):.2f}, cpu per approval "
                f"×{per(f, 'cpu_ms') / max(per(floor, 'cpu_ms'), 1e-9):.2f}"
                + (
                    f", click cpu ×{f.click_cpu_ms / max(floor.click_cpu_ms, 1e-9):.2f}"
                    if f.click_cpu_ms and floor.click_cpu_ms
                    else ""
                )
            )


def ratio(ours: Figures, theirs: Figures, share: float, provider_ms: float) -> float:
    mine = percentile(ours.click_to_done_ms, share) - provider_ms
    other = percentile(theirs.click_to_done_ms, share) - provider_ms
    return mine / other if other > 0 else math.nan


def profile(deployments: Sequence[Deployment], top: int) -> None:
    for d in deployments:
        f = d.figures
        print(
            f"\nstatements per approval by shape: {d.target.name}, {d.database}, "
            f"{len(d.replicas)} replica(s)"
        )
        for shape, count in f.shapes.most_common(top):
            print(f"  {count / max(1, f.approvals):6.2f}  {shape}")


async def run(args: argparse.Namespace) -> None:
    targets = [Target("bot", ROOT)]
    if args.reference is not None:
        targets.append(Target("ref", args.reference))
    origins = {t.name: origin(t) for t in targets}
    settings = [("sqlite", 1)]
    if args.postgresql:
        settings += [("postgresql", 1), ("postgresql", 2)]
    sandbox = VoipcloudSandbox()
    sandbox.control.stall = args.provider_ms / 1000
    slack = Watched(asyncio.get_running_loop())
    deployments: list[Deployment] = []
    with tempfile.TemporaryDirectory(prefix="approval-cost-") as folder:
        workdir = Path(folder)
        async with (
            serve_slack_double(slack),
            serve_asgi(sandbox.app(), thread=True) as vc_url,
            # keepalive_expiry under uvicorn's 5 s keep-alive: with both at 5 s, a connection idle
            # since the last round was sometimes taken for a click just as the bot closed it
            # (httpx.ReadError), with clicks held back by --clicks-together.
            httpx.AsyncClient(
                timeout=60, limits=httpx.Limits(max_connections=None, keepalive_expiry=2.0)
            ) as http,
        ):
            providers = voipcloud_env(vc_url, sandbox)
            for n, (database, count) in enumerate(settings):
                floor = [Target("floor", ROOT, floor=True)] if n == 0 and not args.no_floor else []
                deployments += await measure(
                    [*targets, *floor],
                    database,
                    count,
                    args,
                    slack=slack,
                    providers=providers,
                    workdir=workdir,
                    http=http,
                )
        transfers = [r for r in sandbox.control.requests if r.method == "PUT"]
    print(
        f"approval cost: {args.concurrency} approvals at once"
        + (" (clicked together, once every card was out)" if args.clicks_together else "")
        + f", {args.rounds} round(s) per "
        f"revision and setting, provider answers in {args.provider_ms:g} ms, "
        f"{os.cpu_count()} CPUs; {len(transfers)} transfers for {slack_serials(slack)} approvals"
    )
    for name, where in origins.items():
        print(f"{name}: {where}")
    report(deployments, args.provider_ms)
    print("Slack calls per approval, measured rounds:")
    for d in deployments:
        calls = sum(d.figures.slack.values()) / max(1, d.figures.approvals)
        methods = ", ".join(
            f"{m.removeprefix('slack ')} {n / max(1, d.figures.approvals):.1f}"
            for m, n in sorted(d.figures.slack.items())
        )
        print(f"  {d.database:<10} {len(d.replicas)} {d.target.name:<5} {calls:5.1f}: {methods}")
    if args.profile:
        first = deployments[0].database
        profile([d for d in deployments if d.database == first and len(d.replicas) == 1], args.top)


def slack_serials(slack: Watched) -> int:
    return len(slack.seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=20, help="approvals at once")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per revision and setting")
    parser.add_argument("--provider-ms", type=float, default=50.0, help="provider answer time")
    parser.add_argument(
        "--postgresql",
        metavar="URL",
        default=os.environ.get("TEST_DATABASE_URL"),
        help="a PostgreSQL URL beside which fresh databases are made (default TEST_DATABASE_URL)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="PATH",
        help="a checkout of another revision of this repository, measured beside this one",
    )
    parser.add_argument("--profile", action="store_true", help="statements grouped by shape")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="leave out bench/bare_approval.py (the same calls with no database) beside SQLite",
    )
    parser.add_argument(
        "--clicks-together",
        action="store_true",
        help="every card out and the outbox drained before the round's clicks, then all at once",
    )
    parser.add_argument("--top", type=int, default=40, help="shapes shown with --profile")
    args = parser.parse_args()
    if args.rounds < 1 or args.concurrency < 1 or args.provider_ms < 0:
        parser.error("--rounds and --concurrency must be at least 1, --provider-ms not negative")
    if args.reference is not None:
        args.reference = args.reference.resolve()
        if not (args.reference / "bot" / "cli.py").is_file():
            parser.error(f"--reference {args.reference}: no bot/cli.py there")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
