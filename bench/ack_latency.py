"""How fast `billing-bot serve` acknowledges slash commands while the provider is stalled.

    .venv/bin/python bench/ack_latency.py --requests 30 --stall 5

Starts, on loopback: a Slack Web API double and an InvoiceXpress sandbox that holds every answer
for `--stall` seconds (both in threads of this process), then the real app as its own
`billing-bot serve` process on a throwaway SQLite database. After one warm-up command that does
not reach the provider, it fires `--requests` signed `/invoicexpress sequences` slash commands at
once and prints the acknowledgement latency Slack would see (p50, p99, max; Slack gives up after
3 s), the count of answers that were not HTTP 200, and whether every ack came back before the
provider had answered anything. It then waits for the results to be posted and counts them.

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
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the test doubles live in the repository
    sys.path.insert(0, str(ROOT))

from commands.invoicexpress.sandbox import InvoiceXpressSandbox  # noqa: E402
from tests.doubles.server import loopback_socket, serve_asgi  # noqa: E402
from tests.doubles.signing import signed_headers, slash_command_body  # noqa: E402
from tests.doubles.slack_api import SlackApiDouble, serve_slack_double  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
CHANNEL = "C0BENCH01"
USER = "U0BENCH01"
READY_TIMEOUT = 30.0


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of `values` (share in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@contextlib.asynccontextmanager
async def serve_process(environment: dict[str, str], workdir: Path) -> AsyncIterator[str]:
    """`billing-bot serve` on a free loopback port; yields its base URL once /readyz is 200."""
    probe = loopback_socket()
    port = probe.getsockname()[1]
    probe.close()
    script = Path(sys.executable).with_name("billing-bot")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    log = workdir / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **environment},
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"billing-bot serve exited:\n{log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"billing-bot serve not ready within {READY_TIMEOUT} s")
                await asyncio.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


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


async def slash(
    http: httpx.AsyncClient, url: str, slack: SlackApiDouble, line: str, name: str
) -> tuple[float, int]:
    """One signed slash command; returns (seconds until the HTTP answer, its status)."""
    command, _, text = line.partition(" ")
    body = slash_command_body(
        command, text, response_url=slack.response_url(name), user_id=USER, channel_id=CHANNEL
    )
    headers = signed_headers(body, SIGNING_SECRET)
    started = time.perf_counter()
    try:
        answer = await http.post(f"{url}/slack/events", content=body, headers=headers)
        status = answer.status_code
    except httpx.HTTPError:
        status = 0
    return time.perf_counter() - started, status


async def wait_for_posts(slack: SlackApiDouble, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(slack.calls_to("chat.postMessage")) < count:
        await asyncio.sleep(0.05)
    return len(slack.calls_to("chat.postMessage"))


async def run(requests: int, stall: float) -> None:
    sandbox = InvoiceXpressSandbox()
    answered = Answered(sandbox.app())
    with tempfile.TemporaryDirectory(prefix="ack-bench-") as folder:
        workdir = Path(folder)
        async with (
            serve_slack_double() as slack,
            serve_asgi(answered, thread=True) as ix_url,
        ):
            environment = {
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_BOT_TOKEN": slack.bot_token,
                "SLACK_API_URL": slack.url,
                "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
                "BILLING_VIEWERS": USER,
                "INVOICEXPRESS_ACCOUNT": "bench",
                "INVOICEXPRESS_API_KEY": sandbox.api_key,
                "INVOICEXPRESS_BASE_URL": ix_url,
            }
            limits = httpx.Limits(max_connections=requests + 1)
            async with (
                serve_process(environment, workdir) as url,
                httpx.AsyncClient(timeout=30, limits=limits) as http,
            ):
                # Bolt calls auth.test on its first request; the provider is not involved.
                await slash(http, url, slack, "/billing help", "warm-up")
                sandbox.control.stall = stall
                results = await asyncio.gather(
                    *(
                        slash(http, url, slack, "/invoicexpress sequences", f"r{n}")
                        for n in range(requests)
                    )
                )
                answered_at_acks = answered.count
                posted = await wait_for_posts(slack, requests, stall + 30)
                notes = [
                    c
                    for c in slack.calls_to("response_url")
                    if str(c.params.get("text", "")).startswith("⏳")
                ]
    latencies = [seconds * 1000 for seconds, _ in results]
    failures = sum(1 for _, status in results if status != 200)
    print(f"{requests} concurrent slash commands, provider stalled {stall:g} s")
    print(f"  ack p50  {percentile(latencies, 0.50):8.1f} ms")
    print(f"  ack p99  {percentile(latencies, 0.99):8.1f} ms")
    print(f"  ack max  {max(latencies):8.1f} ms")
    print(f"  non-200 answers: {failures}")
    print(f"  provider answers when the last ack arrived: {answered_at_acks}")
    print(f"  results posted: {posted}/{requests}; 'working…' notes: {len(notes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30, help="concurrent slash commands")
    parser.add_argument("--stall", type=float, default=5.0, help="provider delay, seconds")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.stall))


if __name__ == "__main__":
    main()
