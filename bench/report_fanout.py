"""Balance-report fan-out: how long a report over N accounts takes against a slow portal.

    .venv/bin/python bench/report_fanout.py --accounts 200 --latency 0.05 --concurrency 8
    .venv/bin/python bench/report_fanout.py --accounts 10000 --latency 0.1 --concurrency 20 \
        --no-trace                                          # peak RSS of a long report

Serves the VoIPcloud sandbox in-process (httpx.ASGITransport) with every answer delayed by
`--latency` seconds (the sandbox control's `stall`) and the rate budget off, runs the whole
report as the bot does (reads, chart, CSV, reply) and prints:

- the time spent reading balances beside the bound the concurrency limit sets,
  ceil(N / concurrency) × latency, and their ratio;
- the time spent after the reads (chart, CSV, reply) and the total;
- the size of the attached files;
- peak memory: the process's peak resident set size during the timed run, beside what it held
  before the report began (modules, matplotlib, the sandbox's accounts), and, unless
  `--no-trace`, tracemalloc's peak during a second, traced run (tracing slows it and adds
  memory of its own, so that run is neither timed nor counted in the peak RSS).

The sandbox logs every request it answers, for tests; the benchmark empties that log as the
report goes, so the memory figures are the report's, not the log's.

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
from pathlib import Path

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
    rss_before: int  # resident set size when the report began, bytes


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
        sandbox.control.requests.clear()  # the sandbox's log for tests, not the report's memory
        if done == total:
            read_at.append(time.perf_counter())

    ctx = Context(user_id="UBENCH", channel_id="CBENCH", progress=progress)
    numbers = [str(FIRST_ACCOUNT + n) for n in range(accounts)]
    period = report.scheduled_period(ctx.today())
    rss_before = current_rss_bytes()
    try:
        started = time.perf_counter()
        reply = await report.balance_report(client, numbers, period, ctx, concurrency=concurrency)
        finished = time.perf_counter()
    finally:
        await client.aclose()
    return Run(
        reading=read_at[-1] - started,
        total=finished - started,
        reply=reply,
        rss_before=rss_before,
    )


def megabytes(size: float) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def max_rss_bytes() -> int:
    """The process's peak resident set size so far."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def current_rss_bytes() -> int:
    """The resident set size now (Linux's /proc; elsewhere the peak so far)."""
    # proc(5): statm's second field is the resident set in pages.
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return max_rss_bytes()
    return resident * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=200, help="accounts in the report")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per answer")
    parser.add_argument(
        "--concurrency", type=int, default=report.CONCURRENCY, help="reads in flight at once"
    )
    parser.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="skip the second run under tracemalloc (it takes as long as the first)",
    )
    options = parser.parse_args()
    if options.accounts < 1 or options.concurrency < 1 or options.latency < 0:
        parser.error("--accounts and --concurrency must be at least 1, --latency not negative")
    n, latency, concurrency = options.accounts, options.latency, options.concurrency

    timed = asyncio.run(run_report(n, latency, concurrency))
    peak_rss = max_rss_bytes()  # before the traced run, whose tracing takes memory of its own
    bound = math.ceil(n / concurrency) * latency

    traced = ""
    if options.trace:
        tracemalloc.start()
        asyncio.run(run_report(n, latency, concurrency))
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = f"; tracemalloc peak {megabytes(traced_peak)} (second, traced run)"

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
        f"memory             peak RSS {megabytes(peak_rss)} (timed run; "
        f"{megabytes(timed.rss_before)} before the report began){traced}"
    )
    print(f"reply              {timed.reply.text}")


if __name__ == "__main__":
    main()
