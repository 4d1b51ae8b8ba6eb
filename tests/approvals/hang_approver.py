"""Run as a separate process: approve #1 as U2 while the provider never answers.

Once the provider call is in flight, it writes `IN_FLIGHT` on a line of its own to stdout.
tests/approvals/test_outcome_unknown.py waits for that line, then kills this process mid-call to
prove that a restart settles the request as "outcome unknown" and never runs it again.
"""

from __future__ import annotations

import asyncio
import sys

from bot.config import Settings
from bot.runtime import open_providers, open_runtime
from tests.support import RecordingSurface

IN_FLIGHT = "in flight"


async def main(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, billing_operators="U1", billing_approvers="U2,U3"
    )
    runtimes = open_providers(use_sandboxes=True)
    sandboxes = [runtime.sandbox for runtime in runtimes if runtime.sandbox is not None]
    for sandbox in sandboxes:
        sandbox.control.hold()  # never released: the process is killed mid-call
    bot = await open_runtime(
        settings, system_surface=lambda c: RecordingSurface(channel=c), runtimes=runtimes
    )
    approving = asyncio.ensure_future(
        bot.dispatcher.run(
            "/billing approve 1", user="U2", channel="C1", surface=RecordingSurface(user="U2")
        )
    )
    held = [asyncio.ensure_future(s.control.wait_held(timeout=120)) for s in sandboxes]
    done, _ = await asyncio.wait({approving, *held}, return_when=asyncio.FIRST_COMPLETED)
    if approving in done:
        sys.exit("the approval ended without reaching a provider")
    next(iter(done)).result()  # a timeout ends the process, which the test reports
    for waiting in held:
        waiting.cancel()
    sys.stdout.write(f"{IN_FLIGHT}\n")
    sys.stdout.flush()
    await approving


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
