"""What the hash chain costs an audit append: appends with it beside appends without it, in one run.

    .venv/bin/python bench/audit_append.py                                  # SQLite
    .venv/bin/python bench/audit_append.py --postgresql URL                 # and PostgreSQL
    .venv/bin/python bench/audit_append.py --appends 500 --rounds 4 --concurrency 8

For each database, a fresh one (a temporary SQLite file; on the PostgreSQL server of `URL`, a
throwaway database, dropped at the end) migrated to the head, where two logs append the same
entries:

- *chained*: `AuditLog.record` as the bot runs it: the lock (PostgreSQL's advisory lock, or
  SQLite's write lock), the head read, the hash, the INSERT, in one transaction;
- *plain*: the same `AuditLog.record` whose append is the one INSERT it was before the chain,
  into `audit_plain`, a table shaped as the audit table was before migration 0007.

Rounds alternate between the two. Each round appends `--appends` entries one after another
(*sequential*), then `--appends` more from `--concurrency` tasks at once spread over two engines,
as two replicas would (*concurrent*). Prints per-append latency p50 / p99 and appends per
second, side by side with chained ÷ plain; then what hashing alone takes per row, and how fast
`AuditLog.verify` reads and checks the chain written (rows per second), which bounds what the
background check's batches cost.

It asserts nothing about time. With the defaults it finishes in well under a minute per database.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage import store
from bot.storage.audit import AuditLog, Entry
from bot.storage.chain import Link, seal

PLAIN = sa.Table(
    "audit_plain",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    *(
        sa.Column(c.name, c.type, nullable=c.nullable)
        for c in store.audit.columns
        if c.name not in {"id", "seq", "prev_hash", "hash"}
    ),
)


class PlainLog(AuditLog):
    """The audit log as it appended before the chain: one INSERT, no lock, no head, no hash."""

    async def _append(self, row: dict[str, Any]) -> int | None:
        async with self.engine.begin() as conn:
            result = await conn.execute(PLAIN.insert().values(**row))
        key = result.inserted_primary_key
        return int(key[0]) if key and key[0] is not None else None


def entry(n: int) -> Entry:
    return Entry(
        user_id=f"U{n % 7:08d}",
        channel="C0BILLING",
        command="/voipcloud move-funds",
        args={"account": f"{10000 + n}", "amount": f"{n % 900}.50", "to": "customer"},
        decision="executed",
        outcome="done",
        detail=f"Moved {n % 900}.50 EUR from the partner to customer {10000 + n}.",
        provider="voipcloud",
        provider_status=200,
        duration_ms=100 + n % 50,
        approval_id=n,
    )


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)  # seconds per append
    seconds: float = 0.0  # wall time of the rounds
    appends: int = 0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def rate(self) -> float:
        return self.appends / self.seconds if self.seconds else 0.0


async def timed(log: AuditLog, n: int, into: list[float]) -> None:
    started = time.perf_counter()
    await log.record(entry(n))
    into.append(time.perf_counter() - started)


async def sequential(log: AuditLog, appends: int, figures: Figures, first: int) -> None:
    started = time.perf_counter()
    for n in range(first, first + appends):
        await timed(log, n, figures.latencies)
    figures.seconds += time.perf_counter() - started
    figures.appends += appends


async def concurrent(
    logs: tuple[AuditLog, AuditLog], appends: int, tasks: int, figures: Figures, first: int
) -> None:
    numbers = iter(range(first, first + appends))

    async def worker(log: AuditLog) -> None:
        for n in numbers:
            await timed(log, n, figures.latencies)

    started = time.perf_counter()
    await asyncio.gather(*(worker(logs[t % 2]) for t in range(tasks)))
    figures.seconds += time.perf_counter() - started
    figures.appends += appends


async def bench(url: str, name: str, options: argparse.Namespace) -> None:
    await store.upgrade(url)
    engines = (store.make_engine(url), store.make_engine(url))
    try:
        async with engines[0].begin() as conn:
            await conn.run_sync(PLAIN.metadata.create_all)
        kinds: dict[str, Callable[[AsyncEngine], AuditLog]] = {
            "plain": PlainLog,
            "chained": AuditLog,
        }
        results = {(k, mode): Figures() for k in kinds for mode in ("sequential", "concurrent")}
        first = 0
        for _ in range(options.rounds):
            for kind, make in kinds.items():
                logs = (make(engines[0]), make(engines[1]))
                await sequential(logs[0], options.appends, results[kind, "sequential"], first)
                first += options.appends
                await concurrent(
                    logs, options.appends, options.concurrency, results[kind, "concurrent"], first
                )
                first += options.appends
        print(f"\n{name}: {options.rounds} rounds of {options.appends} appends each way")  # noqa: T201
        for mode in ("sequential", "concurrent"):
            plain, chained = results["plain", mode], results["chained", mode]
            label = mode if mode == "sequential" else f"{options.concurrency} at once, 2 engines"
            print(  # noqa: T201
                f"  {label:<24} plain p50 {plain.p(0.5):6.2f} / p99 {plain.p(0.99):6.2f} ms, "
                f"{plain.rate:6.0f}/s | chained p50 {chained.p(0.5):6.2f} / p99 "
                f"{chained.p(0.99):6.2f} ms, {chained.rate:6.0f}/s | chained ÷ plain "
                f"p50 ×{chained.p(0.5) / plain.p(0.5):.2f}, rate ×{chained.rate / plain.rate:.2f}"
            )
        log = AuditLog(engines[0])
        started = time.perf_counter()
        verdict = await log.verify()
        took = time.perf_counter() - started
        found = "intact" if verdict.broken is None else str(verdict)
        print(  # noqa: T201
            f"  verify: {verdict.rows} rows in {took * 1000:.0f} ms "
            f"({verdict.rows / took:,.0f} rows/s), {found}"
        )
    finally:
        for engine in engines:
            await engine.dispose()


def hashing(rows: int = 20000) -> None:
    sample = {**asdict(entry(1)), "args": '{"account": "10001"}', "at": store.utcnow()}
    head = Link(1, "0" * 64)
    started = time.perf_counter()
    for _ in range(rows):
        sealed = seal(sample, head)
        head = Link(sealed["seq"], sealed["hash"])
    took = time.perf_counter() - started
    print(f"\nhashing alone (encode + SHA-256): {took / rows * 1e6:.1f} µs per row")  # noqa: T201


async def on_postgresql(base: str, options: argparse.Namespace) -> None:
    url = store.async_url(base)
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"

    async def run(statement: str) -> None:
        engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text(statement))
        finally:
            await engine.dispose()

    await run(f'CREATE DATABASE "{name}"')
    try:
        await bench(url.rsplit("/", 1)[0] + "/" + name, "PostgreSQL", options)
    finally:
        await run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=500, help="per round, each way and mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgresql", metavar="URL", help="a PostgreSQL server to use as well")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await bench(f"sqlite:///{Path(folder) / 'bench.db'}", "SQLite", options)
    if options.postgresql:
        await on_postgresql(options.postgresql, options)
    hashing()


if __name__ == "__main__":
    asyncio.run(main())
