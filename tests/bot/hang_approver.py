"""Run as a separate process: approve #1 as U2 while the provider never answers.

tests/bot/test_outcome_unknown.py kills this process mid-call to prove that a restart settles
the request as "outcome unknown" and never runs it again.
"""

from __future__ import annotations

import asyncio
import sys

from bot.config import Settings
from bot.runtime import open_providers, open_runtime
from tests.support import RecordingSurface


async def main(database_url: str) -> None:
    settings = Settings(
        database_url=database_url, billing_operators="U1", billing_approvers="U2,U3"
    )
    runtimes = open_providers(use_sandboxes=True)
    for runtime in runtimes:
        if runtime.sandbox is not None:
            runtime.sandbox.control.stall = 3600.0
    bot = await open_runtime(
        settings, system_surface=lambda c: RecordingSurface(channel=c), runtimes=runtimes
    )
    await bot.dispatcher.run(
        "/billing approve 1", user="U2", channel="C1", surface=RecordingSurface(user="U2")
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
