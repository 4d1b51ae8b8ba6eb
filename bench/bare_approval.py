"""The floor for bench/approval_cost.py: an approval's Slack and provider calls, and nothing else.

    python bench/counted_serve.py COUNTS_FILE bare-approval --host 127.0.0.1  # as the bench does

A bare slack-bolt `AsyncApp` on uvicorn, as bench/bare_bolt.py builds it (Bolt's Starlette
adapter, the options `billing-bot serve` gives uvicorn), made as cheap as the bot is where
Bolt lets it (`process_before_response`, so a listener's acknowledgement is written inline and
no task waits for it; start-up's objects frozen out of garbage collection), that makes, for
`/voipcloud move-funds ACCOUNT AMOUNT DESCRIPTION`, the calls `billing-bot serve` makes for
one approval, in its order, against the same doubles:

- the command: acknowledged; the card posted to the channel (with an Approve button), its
  permalink asked, a direct message to each of the four people who may approve;
- the click on Approve: acknowledged; the card updated to *running*, the transfer `PUT` to the
  VoIPcloud sandbox, the card updated to *done*, the result posted, a direct message to the
  requester, and a note to the click's `response_url`.

No database, no approval state, no audit, no outbox, no retries: what is left of an approval's
overhead when the bot's own work is taken away, i.e. the cost of the libraries it is built on
(Bolt, slack_sdk with aiohttp, httpx, uvicorn and Starlette) for the same calls. approval_cost.py
runs it beside the bot, rounds alternating, and prints the bot's figures over it.

Reads `SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN`, `SLACK_API_URL`, `VOIPCLOUD_BASE_URL`,
`VOIPCLOUD_TOKEN` and `PORT` like the bot. `GET /readyz` answers 200 once it is serving;
`GET /pending` says how many commands and clicks are still making their calls (the bench's
"drained", where the bot has its outbox). It imports nothing of the repository but the
VoIPcloud path and header names, so it runs the same whichever revision is checked out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import traceback
from collections.abc import Awaitable
from typing import Any

import httpx
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.bare_bolt import serve, web
from commands.voipcloud.client import MOVE_FUNDS, TOKEN_HEADER

APPROVERS = ("U0APPROVER", "U2", "U3", "U0ADMIN")  # tests.support.e2e.ROLES: who is told


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


class Floor:
    """The two listeners, and the work each leaves running after its acknowledgement."""

    def __init__(self, client: AsyncWebClient, http: httpx.AsyncClient) -> None:
        self.client = client
        self.http = http
        self.numbers = itertools.count(1)
        self.running: set[asyncio.Task[None]] = set()

    def later(self, work: Awaitable[None]) -> None:
        """What the bot does after acking, here in a task of its own, counted in `/pending`."""

        async def run() -> None:
            try:
                await work
            except Exception:  # the bench waits for a card that will not come: say why
                traceback.print_exc()
                raise

        task = asyncio.ensure_future(run())
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self.later(self.request(body))

    async def request(self, body: dict[str, Any]) -> None:
        _, account, amount, description = str(body["text"]).split(maxsplit=3)
        number = next(self.numbers)
        channel, requester = str(body["channel_id"]), str(body["user_id"])
        summary = f"Move funds partner → customer {account}: {amount}\nDescription: {description}"
        title = f"🔐 *Approval needed* · #{number} · requested by <@{requester}>"
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Approve"},
            "action_id": "approve",
            "value": f"{number} {account} {amount} {description} {requester}",
        }
        card = await self.client.chat_postMessage(
            channel=channel,
            text=title,
            blocks=[section(title), section(summary), {"type": "actions", "elements": [button]}],
        )
        link = await self.client.chat_getPermalink(channel=channel, message_ts=str(card["ts"]))
        asks = f"🔐 <@{requester}> asks for an approval: #{number}\n<{link['permalink']}|Open>"
        for approver in APPROVERS:
            await self.client.chat_postMessage(
                channel=approver, text=asks, blocks=[section(asks), section(summary)]
            )

    async def click(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self.later(self.approve(body))

    async def approve(self, body: dict[str, Any]) -> None:
        number, account, amount, description, requester = body["actions"][0]["value"].split()
        channel, ts = str(body["channel"]["id"]), str(body["message"]["ts"])
        approver = str(body["user"]["id"])
        summary = f"Move funds partner → customer {account}: {amount}\nDescription: {description}"
        running = f"⏳ #{number} approved by <@{approver}>, running…"
        await self.client.chat_update(
            channel=channel, ts=ts, text=running, blocks=[section(running), section(summary)]
        )
        form = {"account_number": account, "amount": amount, "description": description}
        answer = await self.http.put(
            f"{os.environ['VOIPCLOUD_BASE_URL']}{MOVE_FUNDS}",
            headers={TOKEN_HEADER: os.environ["VOIPCLOUD_TOKEN"]},
            files={name: (None, value) for name, value in form.items()},
        )
        data = answer.json()["data"]
        done = f"✅ #{number} *done* — approved by <@{approver}>"
        await self.client.chat_update(
            channel=channel, ts=ts, text=done, blocks=[section(done), section(summary)]
        )
        result = f"Funds moved, partner → customer {account}: {amount}."
        fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in data.items()]
        blocks = [section(result), {"type": "section", "fields": fields}]
        await self.client.chat_postMessage(channel=channel, text=result, blocks=blocks)
        told = f"✅ Your request #{number} was approved by <@{approver}>: *done*"
        await self.client.chat_postMessage(
            channel=requester, text=told, blocks=[section(told), section(summary)]
        )
        note = {"response_type": "ephemeral", "replace_original": False}
        await self.http.post(str(body["response_url"]), json={**note, "text": f"#{number}: done."})


def build() -> Starlette:
    """The Starlette app: Bolt at POST /slack/events, GET /readyz and GET /pending."""
    client = AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"], timeout=15
    )
    app = AsyncApp(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=True,  # the listeners only ack and leave a task: answered at once
    )
    http = httpx.AsyncClient(timeout=60)
    floor = Floor(client, http)
    app.command("/voipcloud")(floor.command)
    app.action("approve")(floor.click)

    async def pending(request: Request) -> Response:
        return JSONResponse({"pending": len(floor.running)})

    return web(app, http, routes=[Route("/pending", pending, methods=["GET"])], freeze=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3002")))
    options = parser.parse_args(argv)
    serve(build(), host=options.host, port=options.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
