"""Balance-report fan-out: how long a report over N accounts takes against a slow portal.

    .venv/bin/python bench/report_fanout.py --accounts 200 --latency 0.05 --concurrency 8

Serves the VoIPcloud sandbox in-process (httpx.ASGITransport) with every answer delayed by
`--latency` seconds (the sandbox control's `stall`) and the rate budget off, runs the whole
report as the bot does (reads, chart, CSV, reply) and prints:

- the time spent reading balances beside the bound the concurrency limit sets,
  ceil(N / concurrency) × latency, and their ratio;
- the time spent after the reads (chart, CSV, reply) and the total;
- the size of the attached files;
- peak memory: tracemalloc's peak during a second, traced run (tracing slows it, so that run is
  not timed) and the process's maximum resident set size.

It asserts nothing about time. With the defaults it finishes in a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass

import httpx

from commands.base import Context, Reply
from commands.voipcloud import chart as _chart  # noqa: F401  (import matplotlib before timing)
from commands.voipcloud import report
from commands.voipcloud.client import VoipcloudClient
from commands.voipcloud.sandbox import (
    FIRST_ACCOUNT,
    SANDBOX_BASE_URL,
    SANDBOX_TOKEN,
    VoipcloudSandbox,
)


@dataclass(frozen=True)
class Run:
    reading: float  # seconds until the last balance was read
    total: float  # seconds until the reply was ready
    reply: Reply


async def run_report(accounts: int, latency: float, concurrency: int) -> Run:
    sandbox = VoipcloudSandbox(population=max(3, accounts))
    sandbox.control.stall = latency
    client = VoipcloudClient.open(
        base_url=SANDBOX_BASE_URL,
        token=SANDBOX_TOKEN,
        rate_limit=None,
        transport=httpx.ASGITransport(app=sandbox.app()),
    )
    read_at: list[float] = []

    async def progress(done: int, total: int, label: str) -> None:
        if done == total:
            read_at.append(time.perf_counter())

    ctx = Context(user_id="UBENCH", channel_id="CBENCH", progress=progress)
    numbers = [str(FIRST_ACCOUNT + n) for n in range(accounts)]
    period = report.scheduled_period(ctx.today())
    try:
        started = time.perf_counter()
        reply = await report.balance_report(client, numbers, period, ctx, concurrency=concurrency)
        finished = time.perf_counter()
    finally:
        await client.aclose()
    return Run(reading=read_at[-1] - started, total=finished - started, reply=reply)


def megabytes(size: float) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=200, help="accounts in the report")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument(
        "--concurrency", type=int, default=report.CONCURRENCY, help="reads in flight at once"
    )
    options = parser.parse_args()
    if options.accounts < 1 or options.concurrency < 1 or options.latency < 0:
        parser.error("--accounts and --concurrency must be at least 1, --latency not negative")
    n, latency, concurrency = options.accounts, options.latency, options.concurrency

    timed = asyncio.run(run_report(n, latency, concurrency))
    bound = math.ceil(n / concurrency) * latency

    tracemalloc.start()
    asyncio.run(run_report(n, latency, concurrency))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    ratio = f"×{timed.reading / bound:.2f} of the bound" if bound else "no latency"
    files = ", ".join(
        f"{f.filename.rsplit('.', 1)[-1].upper()} {len(f.content) / 1024:.1f} KB"
        for f in timed.reply.files
    )
    print(
        f"report fan-out: {n} accounts, latency {latency:.3f} s, concurrency {concurrency}, "
        "rate budget off"
    )
    print(
        f"reading balances   {timed.reading:6.2f} s   bound ceil({n}/{concurrency}) × "
        f"{latency:.3f} s = {bound:.2f} s ({ratio})"
    )
    print(f"chart, CSV, reply  {timed.total - timed.reading:6.2f} s")
    print(f"total              {timed.total:6.2f} s   ({n / timed.total:.0f} accounts/s)")
    print(f"files              {files or 'none'}")
    print(
        f"memory             tracemalloc peak {megabytes(traced_peak)} (second, traced run); "
        f"max RSS {megabytes(max_rss_bytes())}"
    )
    print(f"reply              {timed.reply.text}")


if __name__ == "__main__":
    main()
