"""Everything the bot shows in Slack goes through the outbox: written first, sent after.

    SlackSurface ──rows──► deliveries table ──► Outbox.attempt ──► Slack Web API / response_url
                                  ▲                      │ 429, 5xx, timeout, restart
                                  └── next_at: backoff, Retry-After ◄┘

A row is committed before Slack is called, so what a provider call produced survives any Slack
failure and any restart: the next process's worker sends what is still waiting. Each row is
tried once inline, so most reach Slack within milliseconds, then by the worker with backoff
that honours `Retry-After`. The calls that do not go through here (views.open, auth.test, …)
use slack_sdk's retry handlers as configured in `bot.slack.app.web_client`; rows are sent with only
its connection-error handler, because slack_sdk's rate-limit handler sleeps out `Retry-After`
inside the call, which would hold an approval's run behind a card update, while a row simply
waits in the table for its `next_at`.

Rows sharing a `key` (one message's life: its post, its files, its updates) are sent in order,
and an update is skipped when a newer one for the same message is waiting or sent, so an older
"running…" never overwrites "done"; a notice about a message (`bot.slack.notices`) waits for it
too, but holds none of its rows back. A post whose answer was lost may reach Slack twice (Slack
has no idempotency key for `chat.postMessage`); an update may be repeated harmlessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ops.database import UNWATCHED, HealthReports
from bot.slack import claims
from bot.slack.blocks import NOT_MEMBER_ERRORS, section
from bot.slack.claims import DONE, PENDING, POST, SENDING, UPDATE, WAITING
from bot.slack.failures import backoff, classify
from bot.slack.notices import NOTICE, Permalinks, deliver
from bot.slack.steps import COMPLETE, StepDelivery
from bot.storage.store import deliveries, single_statements, utcnow
from bot.surface import MessageRef
from commands.base import File
from commands.secrets import redact

log = logging.getLogger(__name__)

EPHEMERAL = "ephemeral"
UPLOAD = "file"

SUPERSEDED, DEAD = "superseded", "dead"

# `response_url` takes 5 posts within 30 minutes
# (https://api.slack.com/interactivity/handling#message_responses).
RESPONSE_URL_USES = 5
RESPONSE_URL_LIFETIME = timedelta(minutes=30)


class Places(Protocol):
    """Where a keyed message is remembered besides the outbox (an approval card on its row)."""

    async def posted(self, key: str, ref: MessageRef) -> None:
        """The message `key` names landed at `ref` (it may have been posted late)."""
        ...

    async def locate(self, key: str) -> MessageRef | None:
        """Where the message `key` names is, for messages posted before the outbox kept keys."""
        ...


class NoPlaces:
    """Nothing is remembered elsewhere."""

    async def posted(self, key: str, ref: MessageRef) -> None:
        return None

    async def locate(self, key: str) -> MessageRef | None:
        return None


@dataclass(frozen=True)
class Row:
    id: int
    method: str
    channel: str
    user_id: str | None
    key: str | None
    ts: str | None
    params: dict[str, Any]
    content: bytes | None
    response_url: str | None
    attempts: int
    created_at: datetime
    # Read with the claim (`bot.slack.claims`): what sending it needs.
    behind: bool = False
    outdated: bool = False
    landed: str | None = None


class Outbox:
    """The deliveries table and the one path that sends its rows to Slack."""

    def __init__(
        self,
        engine: AsyncEngine,
        client: AsyncWebClient,
        *,
        places: Places | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_attempts: int = 12,
        lease: timedelta = timedelta(seconds=120),
        steps: StepDelivery | None = None,
        health: HealthReports = UNWATCHED,
    ) -> None:
        self.engine = single_statements(engine)  # each of its transactions is one statement
        self.health = health  # the worker's rounds, reported (bot/ops/database.py)
        self.client = client
        # The same client without the handlers that wait inside a call (see the docstring).
        self.sender = AsyncWebClient(
            token=client.token,
            base_url=client.base_url,
            timeout=client.timeout,
            retry_handlers=[
                h
                for h in client.retry_handlers
                if not isinstance(h, AsyncRateLimitErrorRetryHandler | AsyncServerErrorRetryHandler)
            ],
        )
        self.http = http or httpx.AsyncClient(timeout=10)
        self.clock = clock
        self.max_attempts = max_attempts
        self.lease = lease
        self.unrecorded: dict[int, MessageRef | None] = {}  # sent; `_finish` failed
        self.places = places or NoPlaces()
        self.steps = steps  # Workflow Builder completions (bot.slack.steps)
        self.links = Permalinks()  # the cards' links notices carry
        self._wake = asyncio.Event()

    # --- what surfaces hand in -------------------------------------------------------------

    async def post(
        self,
        channel: str,
        params: dict[str, Any],
        *,
        key: str | None = None,
        user: str | None = None,
        response_url: str | None = None,
        files: Sequence[File] = (),
    ) -> MessageRef | None:
        """A channel message and its files. Returns where it landed when Slack took it at once.
        A key names one message: a second post of it is not written (an end shown again)."""
        if key is not None:
            async with self.engine.connect() as conn:
                found = (await conn.execute(claims.POSTED, {"key": key})).first()
            if found is not None:
                return MessageRef(found.channel, found.result_ts) if found.result_ts else None
        key = key or (f"message:{uuid.uuid4().hex}" if files else None)
        rows = [
            self._row(POST, channel, params, key=key, user=user, response_url=response_url),
            *(
                self._row(
                    UPLOAD,
                    channel,
                    {"filename": f.filename, "title": f.title},
                    key=key,
                    user=user,
                    response_url=response_url,
                    content=f.content,
                )
                for f in files
            ),
        ]
        return await self._deliver(await self._insert(rows), inline=True)

    async def update(
        self,
        channel: str,
        params: dict[str, Any],
        *,
        ts: str | None = None,
        key: str | None = None,
    ) -> None:
        """Replace a message's content: by `ts`, or by `key` once the keyed post has landed."""
        await self._deliver(
            await self._insert([self._row(UPDATE, channel, params, key=key, ts=ts)])
        )

    async def notice(self, channel: str, params: dict[str, Any], *, about: str) -> None:
        """A message about the message `about` names (`bot.slack.notices`): it waits while that
        one waits to be posted, and never holds back that message's own rows."""
        await self._deliver(await self._insert([self._row(NOTICE, channel, params, key=about)]))

    async def ephemeral(
        self, channel: str, user: str, params: dict[str, Any], *, response_url: str | None = None
    ) -> None:
        """A note only `user` sees: through `response_url` when given, else the Web API."""
        row = self._row(EPHEMERAL, channel, params, user=user, response_url=response_url)
        await self._deliver(await self._insert([row]))

    def queued(
        self, method: str, channel: str, params: dict[str, Any], *, content: bytes | None = None
    ) -> dict[str, Any]:
        """A row's values, for a caller that inserts it in its own transaction."""
        return self._row(method, channel, params, content=content)

    # --- the worker --------------------------------------------------------------------------

    async def run(self, every: float = 2.0) -> None:
        """Send what is due, forever: retries, and what an earlier process left behind."""
        while True:
            try:
                await self.flush()
            except Exception as exc:  # the database is away: the rows wait for it
                if not self.health.failed(exc, where="the outbox worker"):
                    log.warning("delivery pass failed (%s); trying again", type(exc).__name__)
            else:
                await self.health.ok(where="the outbox worker")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._wake.wait()

    async def flush(self) -> None:
        """Try every row that is due now, oldest first."""
        now = self.clock()
        due = (
            sa.select(deliveries.c.id)
            .where(
                sa.or_(
                    sa.and_(deliveries.c.status == PENDING, deliveries.c.next_at <= now),
                    sa.and_(deliveries.c.status == SENDING, deliveries.c.lease_until < now),
                )
            )
            .order_by(deliveries.c.id)
            .limit(200)
        )
        async with self.engine.connect() as conn:
            ids = list((await conn.execute(due)).scalars())
        for row_id in ids:
            await self.attempt(row_id)

    async def backlog(self) -> tuple[int, float | None]:
        """Rows waiting, and the age in seconds of the oldest (for metrics and /readyz)."""
        query = sa.select(sa.func.count(), sa.func.min(deliveries.c.created_at)).where(
            deliveries.c.status.in_(WAITING)
        )
        async with self.engine.connect() as conn:
            count, oldest = (await conn.execute(query)).one()
        if not count or oldest is None:
            return 0, None
        if oldest.tzinfo is None:  # SQLite hands aggregates back without the column's type
            from datetime import UTC

            oldest = oldest.replace(tzinfo=UTC)
        return int(count), max(0.0, (self.clock() - oldest).total_seconds())

    async def attempt(self, row_id: int, *, due: bool = True) -> MessageRef | None:
        """Claim one row and send it; on success, go on with the rows waiting behind it."""
        row = await self._claim(row_id, due=due)
        return None if row is None else await self._deliver(row)

    async def _deliver(self, row: Row, *, inline: bool = False) -> MessageRef | None:
        """Send a claimed row. `inline`: a post whose writer gets the ref back and records it
        itself, so `places` hears only of posts that landed later."""
        if row.key and row.behind:  # waiting its turn is not an attempt
            # A notice's card wakes it once it lands (`_next_of`): no need to ask every second.
            later = self.clock() + timedelta(seconds=10 if row.method == NOTICE else 1)
            statement = claims.wait(row.id, next_at=later, attempts=row.attempts - 1)
            async with self.engine.begin() as conn:
                if (await conn.execute(statement)).scalar():
                    return None
            # The row before it finished meanwhile, without seeing this one pending: go now.
            again = await self._claim(row.id, due=False)
            return None if again is None else await self._deliver(again, inline=inline)
        if row.method == UPDATE and row.key and row.outdated:
            if await self._finish(row, SUPERSEDED):
                await self._next_of(row)
            return None
        try:  # a row Slack took whose record a database cut lost is recorded, not sent again
            sent = row.id in self.unrecorded
            ref = self.unrecorded.pop(row.id) if sent else await self._send(row)
        except Exception as exc:
            await self._failed(row, exc)
            return None
        try:
            waiting = await self._finish(row, DONE, ref)
        except Exception:
            self.unrecorded[row.id] = ref  # retried once its lease ends (this process only)
            raise
        if row.method == POST and row.key and ref is not None and not inline:
            try:
                await self.places.posted(row.key, ref)
            except Exception:
                log.exception("recording where %s landed failed", row.key)
        if waiting:
            await self._next_of(row)
        return ref

    # --- rows ----------------------------------------------------------------------------------

    def _row(
        self,
        method: str,
        channel: str,
        params: dict[str, Any],
        *,
        key: str | None = None,
        ts: str | None = None,
        user: str | None = None,
        response_url: str | None = None,
        content: bytes | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        return {
            "method": method,
            "channel": channel,
            "user_id": user,
            "key": key,
            "ts": ts,
            "params": json.dumps(params, ensure_ascii=False),
            "content": content,
            "response_url": response_url,
            "status": PENDING,
            "attempts": 0,
            "next_at": now,
            "created_at": now,
        }

    async def _insert(self, rows: list[dict[str, Any]]) -> Row:
        """The rows of one reply in one statement; returns the first, claimed."""
        values = claims.write(rows, now=self.clock(), lease=self.lease)
        async with self.engine.begin() as conn:
            result = await conn.execute(claims.WRITE, values)
            written = sorted(result.mappings().all(), key=_by_id)
        return _row_of({**rows[0], "attempts": 1, **written[0]})

    async def _claim(self, row_id: int, *, due: bool) -> Row | None:
        statement = claims.claim(row_id, now=self.clock(), lease=self.lease, due=due)
        async with self.engine.begin() as conn:
            found = (await conn.execute(statement)).mappings().first()
        return None if found is None else _row_of(found)

    async def _next_of(self, row: Row) -> None:
        query = (
            sa.select(deliveries.c.id)
            .where(
                deliveries.c.key == row.key,
                deliveries.c.id > row.id,
                deliveries.c.status == PENDING,
            )
            .order_by(deliveries.c.id)
        )
        async with self.engine.connect() as conn:
            waiting = list((await conn.execute(query)).scalars())
        for row_id in waiting:
            await self.attempt(row_id, due=False)  # its turn has come, whatever its next_at

    async def _set(self, row_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                deliveries.update().where(deliveries.c.id == row_id).values(**values)
            )

    async def _finish(self, row: Row, status: str, ref: MessageRef | None = None) -> bool:
        """True when rows of the same message wait behind this one."""
        # What was shown is Slack's now: the bodies (files, private notes) are not kept.
        values = claims.finish(
            row.id,
            status=status,
            done_at=self.clock(),
            result_ts=ref.ts if ref else None,
            params="{}",
            content=None,
            response_url=None,
            lease_until=None,
        )
        async with self.engine.begin() as conn:
            return bool((await conn.execute(claims.FINISH, values)).scalar())

    async def _failed(self, row: Row, exc: Exception) -> None:
        failure = classify(exc)
        if not isinstance(exc, SlackApiError):
            log.warning("delivery %s (%s) raised %s", row.id, row.method, type(exc).__name__)
        if failure.retry and row.attempts < self.max_attempts:
            delay = backoff(row.attempts, failure.retry_after)
            await self._set(
                row.id,
                status=PENDING,
                next_at=self.clock() + timedelta(seconds=delay),
                error=redact(failure.error)[:500],
                lease_until=None,
            )
            log.info(
                "delivery %s (%s to %s) failed with %s; retrying in %.0f s",
                row.id,
                row.method,
                row.channel,
                failure.error,
                delay,
            )
            self._wake_in(delay)
            return
        await self._set(
            row.id, status=DEAD, error=redact(failure.error)[:500], done_at=self.clock()
        )
        log.error(
            "delivery %s (%s to %s) given up after %d attempts: %s",
            row.id,
            row.method,
            row.channel,
            row.attempts,
            failure.error,
        )

    def _wake_in(self, delay: float) -> None:
        with_loop = asyncio.get_running_loop()
        with_loop.call_later(max(0.0, delay) + 0.01, self._wake.set)

    # --- sending -------------------------------------------------------------------------------

    async def _send(self, row: Row) -> MessageRef | None:
        if row.method == POST:
            return await self._post(row)
        if row.method == UPDATE:
            await self._update(row)
            return None
        if row.method == EPHEMERAL:
            await self._ephemeral(row, row.params)
            return None
        if row.method == UPLOAD:
            await self._upload(row)
            return None
        if row.method == NOTICE:
            landed = row.landed or await self._located(row.key)
            await deliver(self.sender, row.channel, row.params, landed, self.links)
            return None
        if row.method == COMPLETE and self.steps is not None:
            await self.steps.deliver(self.sender, row.channel, row.params, row.content, self.notice)
            return None
        raise ValueError(f"unknown delivery method {row.method}")

    async def _post(self, row: Row) -> MessageRef | None:
        try:
            response = await self.sender.chat_postMessage(channel=row.channel, **row.params)
        except SlackApiError as exc:
            if classify(exc).error not in NOT_MEMBER_ERRORS:
                raise
            await self._not_member(row)
            return None
        return MessageRef(str(response["channel"]), str(response["ts"]))

    async def _not_member(self, row: Row) -> None:
        """The bot cannot post here: show the requester privately and say how to fix it."""
        if not row.user_id:
            log.warning("cannot post in %s (not a member); nobody to tell", row.channel)
            return
        note = (
            "I am not a member of this channel, so only you see this. Invite me with "
            "`/invite @billing-bot` so results, approvals and files can be posted here."
        )
        if row.method == UPLOAD:
            note = (
                f"I could not post `{row.params.get('filename', 'a file')}` because I am not a "
                "member of this channel. Invite me with `/invite @billing-bot`, then run the "
                "command again."
            )
        else:  # what was for the channel, shown to one person: without its metadata
            shown = {k: v for k, v in row.params.items() if k != "metadata"}
            await self.ephemeral(row.channel, row.user_id, shown, response_url=row.response_url)
        await self.ephemeral(
            row.channel,
            row.user_id,
            {"text": note, "blocks": [section(note)]},
            response_url=row.response_url,
        )

    async def _update(self, row: Row) -> None:
        ts = row.ts or row.landed or await self._located(row.key)
        if ts is None:
            # The message it would change was never posted (shown privately instead).
            log.info("delivery %s: no message to update for %s", row.id, row.key)
            return
        await self.sender.chat_update(channel=row.channel, ts=ts, **row.params)

    async def _located(self, key: str | None) -> str | None:
        """Where a message posted before the outbox kept keys is. A post the outbox sent is
        read with the claim (`row.landed`): its post is done by the time the claim is made,
        since rows behind a post wait while it is pending or being sent."""
        ref = await self.places.locate(key) if key is not None else None
        return ref.ts if ref is not None else None

    async def _ephemeral(self, row: Row, params: dict[str, Any]) -> None:
        fresh = self.clock() - row.created_at < RESPONSE_URL_LIFETIME
        if row.response_url and row.attempts == 1 and fresh:
            payload = {"response_type": "ephemeral", "replace_original": False, **params}
            try:
                answer = await self.http.post(row.response_url, json=payload)
                if answer.status_code < 300:
                    return
                log.info("response_url answered %s; using the Web API", answer.status_code)
            except httpx.HTTPError as exc:
                log.info("response_url failed (%s); using the Web API", type(exc).__name__)
        if not row.user_id:
            return
        await self.sender.chat_postEphemeral(channel=row.channel, user=row.user_id, **params)

    async def _upload(self, row: Row) -> None:
        try:
            await self.sender.files_upload_v2(
                channel=row.channel,
                file=row.content or b"",
                filename=str(row.params.get("filename", "file")),
                title=str(row.params.get("title", "")),
            )
        except SlackApiError as exc:
            if classify(exc).error not in NOT_MEMBER_ERRORS:
                raise
            await self._not_member(row)


def _by_id(found: Any) -> int:
    return int(found["id"])


def _row_of(found: Any) -> Row:
    """A row as a claim or a write returned it (`bot.slack.claims`)."""
    return Row(
        id=found["id"],
        method=found["method"],
        channel=found["channel"],
        user_id=found["user_id"],
        key=found["key"],
        ts=found["ts"],
        params=json.loads(found["params"] or "{}"),
        content=found["content"],
        response_url=found["response_url"],
        attempts=found["attempts"],
        created_at=found["created_at"],
        behind=bool(found["behind"]),
        outdated=bool(found["outdated"]),
        landed=str(found["landed"]) if found["landed"] else None,
    )
