"""The yardstick for bench/ack_latency.py: a bare slack-bolt `AsyncApp` on uvicorn.

    .venv/bin/python bench/bare_bolt.py --port 3001

It is what Bolt's documentation builds (an `AsyncApp` with its defaults, mounted with Bolt's
Starlette adapter, https://tools.slack.dev/bolt-python/concepts/adapters), with the same
uvicorn options as `billing-bot serve`. Every slash command is acknowledged at once; afterwards
it does what the bot does with `/invoicexpress sequences`: one GET to the provider at
`BENCH_PROVIDER_URL` (the benchmark stalls it), a "working…" note to the command's
`response_url` when the answer takes over two seconds, and the result posted with
`chat.postMessage`. It reads `SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN` and `SLACK_API_URL` like
the bot; `GET /readyz` answers 200 once it is serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

WORKING_AFTER = 2.0  # seconds, as the bot's dispatcher waits before "working…"


def build(provider_url: str) -> Starlette:
    """The Starlette app: Bolt at POST /slack/events, and GET /readyz."""
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    )
    app = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])
    http = httpx.AsyncClient(timeout=60)

    @app.command("/invoicexpress")
    async def on_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        # With process_before_response off (the default), Bolt has already answered Slack
        # once ack() returned; what follows runs in the task Bolt started for the listener.
        call = asyncio.ensure_future(http.get(provider_url))
        done, _ = await asyncio.wait({call}, timeout=WORKING_AFTER)
        if not done:
            note = {"response_type": "ephemeral", "text": "⏳ working…"}
            await http.post(str(body["response_url"]), json=note)
        answer = await call
        await client.chat_postMessage(
            channel=str(body["channel_id"]), text=f"provider answered {answer.status_code}"
        )

    return web(app, http)


def web(
    app: AsyncApp,
    http: httpx.AsyncClient,
    *,
    routes: Sequence[Route] = (),
    freeze: bool = False,
) -> Starlette:
    """`app` at POST /slack/events and GET /readyz (plus `routes`), closing `http` at the end;
    with `freeze`, start-up's objects are left out of garbage collection once it is serving,
    as bot.slack.app.settle_heap does (bench/bare_approval.py uses both)."""
    handler = AsyncSlackRequestHandler(app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def readyz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await http.aclose()

    return Starlette(
        routes=[
            Route("/slack/events", events, methods=["POST"]),
            Route("/readyz", readyz, methods=["GET"]),
            *routes,
        ],
        lifespan=lifespan,
    )


def serve(web_app: Starlette, *, host: str, port: int, log_level: str) -> None:
    """uvicorn with the options `billing-bot serve` gives it."""
    uvicorn.run(
        web_app,
        host=host,
        port=port,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="on",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    options = parser.parse_args()
    serve(
        build(os.environ["BENCH_PROVIDER_URL"]),
        host=options.host,
        port=options.port,
        log_level="info",
    )


if __name__ == "__main__":
    main()
