"""How fast `billing-bot serve` acknowledges slash commands, beside a bare Bolt app.

    .venv/bin/python bench/ack_latency.py                      # 30 and 200 at once, 4 rounds
    .venv/bin/python bench/ack_latency.py --levels 200 --rounds 6 --stall 5
    .venv/bin/python bench/ack_latency.py --reference ../ref    # beside another revision too

Starts, on loopback: a Slack Web API double and an InvoiceXpress sandbox that holds every answer
for `--stall` seconds (both in threads of this process); then two servers (three with
`--reference`, below), each its own process on uvicorn: the real app as `billing-bot serve`
on a throwaway SQLite database, and the bare slack-bolt `AsyncApp` of bench/bare_bolt.py, which
acknowledges and then does comparable work (the same stalled provider call, a "working…" note
after two seconds, a posted result).

With `--reference PATH` (a checkout of another revision of this repository, for instance
`git worktree add --detach ../ref <commit>`), a third server runs: that revision's `serve`, as
`python -m bot.cli serve` with its working directory at PATH and `PYTHONPATH=PATH`, so this
venv's interpreter and dependencies import that checkout's `bot` and `commands` (PYTHONPATH
comes before the editable install's finder; the script checks it before starting, and says
where they came from). It gets its own throwaway database. The comparison is then before
and after a change, on the same machine, in the same minutes.

After a warm-up command to each (Bolt calls `auth.test` on its first request), it runs rounds:
at each concurrency level (`--levels`, default 30 and 200) it fires that many signed slash
commands at once at one server, then the same at the other(s), rotating which goes first
(with two servers, they alternate), and waits for every result to be posted before the next
round, so no round's work overlaps another's acks. Latency is what Slack would see: from
sending the request to the HTTP answer.

For each server and level it prints, over all rounds: p50, p99 and max acknowledgement latency,
failures (answers that were not HTTP 200, or came after Slack's 3 s), how many results were
posted (the work after the ack completed) and how many provider answers had arrived when a
round's last ack did (0 means the acks never waited for the provider). Its last lines are the
ratios bot / bare of p50 and p99 at each level; with `--reference`, bot / ref (this tree
against the reference), bot / bare and ref / bare.

It prints figures and asserts nothing; run it from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test doubles live in the repository
    sys.path.insert(0, str(ROOT))

from commands.invoicexpress.client import SEQUENCES  # noqa: E402
from commands.invoicexpress.sandbox import InvoiceXpressSandbox  # noqa: E402
from tests.support.ports import loopback_socket  # noqa: E402
from tests.support.server import serve_asgi  # noqa: E402
from tests.support.signing import signed_headers, slash_command_body  # noqa: E402
from tests.support.slack_api import SlackApiDouble, serve_slack_double  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
CHANNEL = "C0BENCH01"
USER = "U0BENCH01"
COMMAND = "/invoicexpress sequences"
READY_TIMEOUT = 30.0
SLACK_DEADLINE = 3.0  # seconds Slack waits for the acknowledgement
POSTED = "chat.postMessage"


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@contextlib.asynccontextmanager
async def server_process(
    name: str,
    command: list[str],
    environment: dict[str, str],
    workdir: Path,
    cwd: Path | None = None,
) -> AsyncIterator[str]:
    """`command` (given `--port`) on a free loopback port; yields its URL once /readyz is 200.

    It runs in `cwd` (default `workdir`) and logs to `workdir`/`name`.log.
    """
    probe = loopback_socket()
    port = probe.getsockname()[1]
    probe.close()
    log = workdir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **environment},
            cwd=cwd or workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready within {READY_TIMEOUT} s")
                await asyncio.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


def bot_command() -> list[str]:
    script = Path(sys.executable).with_name("billing-bot")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return [*command, "serve"]


def reference_command() -> list[str]:
    """The reference revision's `serve`: by module, so PYTHONPATH decides which `bot` runs."""
    return [sys.executable, "-m", "bot.cli", "serve"]


def reference_environment(checkout: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(checkout)}


def reference_origin(checkout: Path) -> str:
    """Where the reference server's `bot` and `commands` come from; fails unless `checkout`."""
    probe = "import bot, commands; print(bot.__file__); print(commands.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, **reference_environment(checkout)},
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    files = [Path(line).resolve() for line in found.stdout.split()]
    if found.returncode != 0 or len(files) != 2:
        raise RuntimeError(f"the reference does not import:\n{found.stderr}")
    for file in files:
        if not file.is_relative_to(checkout):
            raise RuntimeError(f"the reference imports {file}, not from {checkout}")
    revision = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{checkout}" + (f" at {revision}" if revision else "")


class Answered:
    """ASGI middleware counting the answers the wrapped app has finished sending."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.count += 1

        await self.app(scope, receive, counting)


@dataclass
class Figures:
    """What one server showed at one concurrency level, over every round."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0
    posted: int = 0
    expected: int = 0
    provider_answered_before_last_ack: int = 0


@dataclass
class Target:
    name: str
    url: str
    figures: dict[int, Figures] = field(default_factory=dict)


class Bench:
    def __init__(
        self,
        slack: SlackApiDouble,
        answered: Answered,
        session: aiohttp.ClientSession,
        stall: float,
    ) -> None:
        self.slack = slack
        self.answered = answered
        self.session = session
        self.stall = stall
        self.serial = 0

    async def slash(self, url: str) -> tuple[float, int]:
        """One signed slash command; returns (seconds until the HTTP answer, its status)."""
        self.serial += 1
        command, _, text = COMMAND.partition(" ")
        body = slash_command_body(
            command,
            text,
            response_url=self.slack.response_url(f"r{self.serial}"),
            user_id=USER,
            channel_id=CHANNEL,
        )
        headers = signed_headers(body, SIGNING_SECRET)
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{url}/slack/events", data=body, headers=headers
            ) as answer:
                await answer.read()
                status = answer.status
        except aiohttp.ClientError:
            status = 0
        return time.perf_counter() - started, status

    async def posts_reach(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.slack.calls_to(POSTED)) < count:
            await asyncio.sleep(0.05)
        return len(self.slack.calls_to(POSTED))

    async def warm_up(self, target: Target) -> None:
        before = len(self.slack.calls_to(POSTED))
        _, status = await self.slash(target.url)
        if status != 200 or await self.posts_reach(before + 1, 30) < before + 1:
            raise RuntimeError(f"{target.name}: the warm-up command got {status} or no result")

    async def round(self, target: Target, requests: int) -> None:
        figures = target.figures.setdefault(requests, Figures())
        before = len(self.slack.calls_to(POSTED))
        answered_before = self.answered.count
        results = await asyncio.gather(*(self.slash(target.url) for _ in range(requests)))
        figures.provider_answered_before_last_ack += self.answered.count - answered_before
        figures.latencies_ms += [seconds * 1000 for seconds, _ in results]
        figures.failures += sum(
            1 for seconds, status in results if status != 200 or seconds > SLACK_DEADLINE
        )
        posted = await self.posts_reach(before + requests, self.stall + 60)
        figures.posted += posted - before
        figures.expected += requests


def in_turn(targets: Sequence[Target], n: int) -> list[Target]:
    """Round `n`'s order: rotated by one each round (with two servers, they alternate)."""
    shift = n % len(targets)
    return [*targets[shift:], *targets[:shift]]


def ratios(ours: Target, theirs: Target, levels: Sequence[int]) -> None:
    for level in levels:
        mine, other = ours.figures[level].latencies_ms, theirs.figures[level].latencies_ms
        p50 = percentile(mine, 0.50) / percentile(other, 0.50)
        p99 = percentile(mine, 0.99) / percentile(other, 0.99)
        print(f"{ours.name}/{theirs.name} at {level}: p50 ×{p50:.2f}, p99 ×{p99:.2f}")


def report(
    targets: Sequence[Target],
    levels: Sequence[int],
    rounds: int,
    stall: float,
    reference: str | None = None,
) -> None:
    servers = "rotating servers" if len(targets) > 2 else "alternating servers"
    print(
        f"acknowledgement latency: {rounds} rounds per level, {servers}, provider "
        f"stalled {stall:g} s, {os.cpu_count()} CPUs"
    )
    if reference is not None:
        print(f"bot: {ROOT} as it is; ref: {reference}")
    for level in levels:
        print(f"{level} concurrent signed slash commands ({COMMAND})")
        for target in targets:
            f = target.figures[level]
            print(
                f"  {target.name:<4} p50 {percentile(f.latencies_ms, 0.50):7.1f} ms  "
                f"p99 {percentile(f.latencies_ms, 0.99):7.1f} ms  "
                f"max {max(f.latencies_ms):7.1f} ms  failures {f.failures}/"
                f"{len(f.latencies_ms)}  results posted {f.posted}/{f.expected}  "
                f"provider answers before the last ack {f.provider_answered_before_last_ack}"
            )
    bot, *others = targets
    bare = others[-1]
    for other in others[:-1]:  # the reference, if any
        ratios(bot, other, levels)
    ratios(bot, bare, levels)
    for other in others[:-1]:
        ratios(other, bare, levels)


async def run(
    levels: Sequence[int], rounds: int, stall: float, reference: Path | None = None
) -> None:
    origin = reference_origin(reference) if reference is not None else None
    sandbox = InvoiceXpressSandbox()
    answered = Answered(sandbox.app())
    with tempfile.TemporaryDirectory(prefix="ack-bench-") as folder:
        workdir = Path(folder)
        async with (
            serve_slack_double() as slack,
            serve_asgi(answered, thread=True) as ix_url,
        ):
            slack_env = {
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_API_URL": slack.url,
            }
            bot_env = {
                **slack_env,
                "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
                "BILLING_VIEWERS": USER,
                "INVOICEXPRESS_ACCOUNT": "bench",
                "INVOICEXPRESS_API_KEY": sandbox.api_key,
                "INVOICEXPRESS_BASE_URL": ix_url,
            }
            bare_env = {
                **slack_env,
                "BENCH_PROVIDER_URL": f"{ix_url}{SEQUENCES}?api_key={sandbox.api_key}",
            }
            bare_command = [sys.executable, str(ROOT / "bench" / "bare_bolt.py")]
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=60)
            async with contextlib.AsyncExitStack() as stack:
                bot_url = await stack.enter_async_context(
                    server_process("bot", bot_command(), bot_env, workdir)
                )
                targets = [Target("bot", bot_url)]
                if reference is not None:
                    ref_env = {
                        **bot_env,
                        **reference_environment(reference),
                        "DATABASE_URL": f"sqlite:///{workdir / 'reference.db'}",
                    }
                    ref_url = await stack.enter_async_context(
                        server_process("ref", reference_command(), ref_env, workdir, reference)
                    )
                    targets.append(Target("ref", ref_url))
                bare_url = await stack.enter_async_context(
                    server_process("bare", bare_command, bare_env, workdir)
                )
                targets.append(Target("bare", bare_url))
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(connector=connector, timeout=timeout)
                )
                bench = Bench(slack, answered, session, stall)
                for target in targets:
                    await bench.warm_up(target)
                sandbox.control.stall = stall
                for level in levels:
                    for n in range(rounds):
                        for target in in_turn(targets, n):
                            await bench.round(target, level)
    report(targets, levels, rounds, stall, origin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--levels", type=int, nargs="+", default=[30, 200], help="concurrent slash commands"
    )
    parser.add_argument("--rounds", type=int, default=4, help="rounds per server and level")
    parser.add_argument("--stall", type=float, default=5.0, help="provider delay, seconds")
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="PATH",
        help="a checkout of another revision of this repository, measured as a third server",
    )
    args = parser.parse_args()
    if args.rounds < 1 or min(args.levels) < 1 or args.stall < 0:
        parser.error("--rounds and --levels must be at least 1, --stall not negative")
    reference = args.reference.resolve() if args.reference is not None else None
    if reference is not None and not (reference / "bot" / "cli.py").is_file():
        parser.error(f"--reference {args.reference}: no bot/cli.py there")
    asyncio.run(run(args.levels, args.rounds, args.stall, reference))


if __name__ == "__main__":
    main()
