"""`billing-bot` as separate processes, for what only several replicas can show.

    async with replicas(environment, workdir, count=2) as (first, second):
        ...signed requests to first.url and second.url...

Each replica is `billing-bot serve` on its own loopback port (and any further `args`, such as
`--metrics-port`), started in `workdir` with the given environment, and ready once
`GET /readyz` answers 200. Its output goes to a log file the
test can read (`replica.log_text()`). Leaving the block stops every replica still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL = 0.05


def cli(*args: str) -> list[str]:
    """The installed `billing-bot` script beside this interpreter, else `python -m bot.cli`."""
    script = Path(sys.executable).with_name("billing-bot")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "bot.cli", *args]


def child_environment(environment: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **environment}


async def upgrade_database(environment: Mapping[str, str], workdir: Path) -> None:
    """`billing-bot db upgrade`, the release step PostgreSQL needs before `serve`."""
    done = await asyncio.to_thread(
        subprocess.run,
        cli("db", "upgrade"),
        env=child_environment(environment),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"db upgrade failed:\n{done.stdout}\n{done.stderr}"


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig` (SIGKILL: die at once, as a crash would) and wait for the exit."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, STOP_TIMEOUT)


async def _start(
    name: str, environment: Mapping[str, str], workdir: Path, args: Sequence[str] = ()
) -> Replica:
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            cli("serve", "--host", "127.0.0.1", *args),
            env={**child_environment(environment), "PORT": str(port)},
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    replica = Replica(name, process, f"http://127.0.0.1:{port}", log)
    try:
        await _ready(replica)
    except BaseException:
        await replica.stop(signal.SIGKILL)
        raise
    return replica


async def _ready(replica: Replica) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if replica.process.poll() is not None:
                raise AssertionError(f"{replica.name} exited at start:\n{replica.log_text()}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{replica.url}/readyz")).status_code == 200:
                    return
            if loop.time() > deadline:
                raise AssertionError(f"{replica.name} not ready in {START_TIMEOUT} s")
            await asyncio.sleep(POLL)


@contextlib.asynccontextmanager
async def replicas(
    environment: Mapping[str, str], workdir: Path, *, count: int, args: Sequence[str] = ()
) -> AsyncIterator[list[Replica]]:
    started = await asyncio.gather(
        *(_start(f"replica-{n}", environment, workdir, args) for n in range(1, count + 1)),
        return_exceptions=True,
    )
    running = [r for r in started if isinstance(r, Replica)]
    try:
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield running
    finally:
        await asyncio.gather(*(r.stop() for r in running))
