"""Prometheus metrics of one running bot, in its own registry (`GET /metrics`).

    billing_commands_total{provider, command, outcome}   ok|failed|unknown|refused|invalid
    billing_provider_request_seconds{provider, status}   HTTP status, or "error" (no answer)
    billing_slack_api_calls_total{method, result}        ok|error|ratelimited|unreachable
    billing_approvals{state}                             rows by state, read at scrape time
    billing_schedule_runs_total{kind, result}            ok|failed|missed|error
    billing_provider_queue_length{provider}              requests waiting or running here
    billing_provider_budget_remaining{provider}          requests that may go now
    billing_audit_chain_ok                               1, or 0 once a break is found
    billing_database_up                                  0 while the database cannot be used

Every label value comes from a closed set: declared command paths, provider and schedule kind
names, HTTP statuses, Slack method names. Anything else (a mistyped command, say) is counted
under "unknown"; user-typed values and secrets never become labels.

Command and schedule figures are taken from the audit log as rows are written
(`AuditLog.listen`), so they count exactly what the audit log records. Figures that live
elsewhere (approvals in the database, queue and budget levels) are read by `refresh` just
before each scrape; `on_refresh` adds such a reading (deliveries waiting, for example). The
audit chain is not re-hashed at scrape time: the sweeper checks it a batch at a time
(`bot.storage.audit.ChainCheck`) and the scrape reads its latest finding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any

import sqlalchemy as sa
import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.approvals.state import Status
from bot.storage.audit import Entry
from bot.storage.store import approvals
from commands.http import Observer
from commands.limits import Limit

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
# Provider calls take from tens of milliseconds to the 20 s timeout.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
# What the audit log's run outcomes mean for the commands counter.
RUN_OUTCOMES = {"done": "ok", "failed": "failed", "unknown": "unknown"}
RUN_DECISIONS = frozenset({"ran", "executed"})
SCHEDULE_PREFIX = "schedule "
SLACK_METHOD = re.compile(r"^[a-z]+(?:\.[A-Za-z]+)+$")

Refresher = Callable[[], Awaitable[None]]


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.commands = Counter(
            "billing_commands",
            "Commands by provider, declared command path and outcome.",
            ["provider", "command", "outcome"],
            registry=self.registry,
        )
        self.provider_seconds = Histogram(
            "billing_provider_request_seconds",
            "Provider HTTP requests (each attempt) by provider and status, in seconds.",
            ["provider", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.slack_calls = Counter(
            "billing_slack_api_calls",
            "Slack Web API calls (each attempt) by method and result; HTTP 429 is ratelimited.",
            ["method", "result"],
            registry=self.registry,
        )
        self.approvals = Gauge(
            "billing_approvals",
            "Approval requests in the database by state (the same figure on every replica).",
            ["state"],
            registry=self.registry,
        )
        self.schedule_runs = Counter(
            "billing_schedule_runs",
            "Schedule runs by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "billing_provider_queue_length",
            "Provider requests waiting or running in this process's queue.",
            ["provider"],
            registry=self.registry,
        )
        self.budget_remaining = Gauge(
            "billing_provider_budget_remaining",
            "Provider requests the request budget lets go now (shared by replicas on PostgreSQL).",
            ["provider"],
            registry=self.registry,
        )
        self.deliveries_waiting = Gauge(
            "billing_deliveries_waiting",
            "Messages, updates, notes and files waiting in the outbox for Slack to take them.",
            registry=self.registry,
        )
        self.delivery_oldest = Gauge(
            "billing_delivery_oldest_seconds",
            "Age of the oldest delivery still waiting (0 when none waits).",
            registry=self.registry,
        )
        self.audit_chain_ok = Gauge(
            "billing_audit_chain_ok",
            "1 while the audit log's hash chain verifies, 0 once a break is found "
            "(checked in the background, a batch of rows at a time).",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "billing_database_up",
            "1 while the database can be used, 0 from a failed database call (or /readyz's "
            "write probe) until the write probe passes again (bot/ops/database.py).",
            registry=self.registry,
        )
        self._commands: set[str] = set()
        self._providers: set[str] = set()
        self._kinds: set[str] = set()
        self._refreshers: list[Refresher] = []

    # --- what may appear in labels ---------------------------------------------------------------

    def know(
        self, *, commands: Iterable[str], providers: Iterable[str], kinds: Iterable[str]
    ) -> None:
        """The declared command paths (`/smsc invoice get`), provider and schedule kind names."""
        self._commands |= set(commands)
        self._providers |= set(providers)
        self._kinds |= set(kinds)

    def _label(self, value: str, known: set[str]) -> str:
        return value if value in known else UNKNOWN

    # --- the audit log ---------------------------------------------------------------------------

    def on_audit(self, entry: Entry, audit_id: int | None) -> None:
        if entry.command.startswith(SCHEDULE_PREFIX):
            self._schedule(entry)
            return
        if entry.decision in RUN_DECISIONS:
            outcome = RUN_OUTCOMES.get(entry.outcome, "failed")
        elif entry.decision in ("refused", "invalid"):
            outcome = entry.decision
        else:  # approval requests and decisions: counted by `billing_approvals`
            return
        self.commands.labels(
            self._label(entry.provider, self._providers),
            self._label(entry.command, self._commands),
            outcome,
        ).inc()

    def _schedule(self, entry: Entry) -> None:
        kind = self._label(entry.command.removeprefix(SCHEDULE_PREFIX), self._kinds)
        if entry.decision == "missed":
            result = "missed"
        elif entry.outcome == "error":
            result = "error"
        else:
            result = "ok" if entry.outcome == "done" else "failed"
        self.schedule_runs.labels(kind, result).inc()

    # --- provider HTTP ---------------------------------------------------------------------------

    def provider_observer(self, provider: str) -> Observer:
        def observe(method: str, status: int | None, seconds: float) -> None:
            label = "error" if status is None else str(status)
            self.provider_seconds.labels(provider, label).observe(seconds)

        return observe

    # --- Slack Web API ---------------------------------------------------------------------------

    def slack_observer(self, base_url: str) -> AsyncRetryHandler:
        """Counts each Web API attempt; put it first among the client's retry handlers."""
        return _SlackCounter(self, base_url)

    def count_slack(self, method: str, result: str) -> None:
        self.slack_calls.labels(method, result).inc()

    # --- read at scrape time ---------------------------------------------------------------------

    def on_refresh(self, refresher: Refresher) -> None:
        self._refreshers.append(refresher)

    def watch_approvals(self, engine: AsyncEngine) -> None:
        async def count() -> None:
            query = sa.select(approvals.c.status, sa.func.count()).group_by(approvals.c.status)
            async with engine.connect() as conn:
                counted = {str(s): int(n) for s, n in (await conn.execute(query)).all()}
            for state in Status:
                self.approvals.labels(state.value).set(counted.get(state.value, 0))

        self.on_refresh(count)

    def watch_chain(self, ok: Callable[[], bool]) -> None:
        """`ok`: whether the background check of the audit chain has found it intact so far."""

        async def read() -> None:
            self.audit_chain_ok.set(1 if ok() else 0)

        self.on_refresh(read)

    def watch_deliveries(self, backlog: Callable[[], Awaitable[tuple[int, float | None]]]) -> None:
        """`backlog`: the outbox's count of waiting rows and the oldest one's age."""

        async def read() -> None:
            waiting, oldest = await backlog()
            self.deliveries_waiting.set(waiting)
            self.delivery_oldest.set(oldest or 0.0)

        self.on_refresh(read)

    def watch_limit(self, provider: str, limit: Limit) -> None:
        gauge = self.queue_length if limit.kind == "queue" else self.budget_remaining

        async def read() -> None:
            await limit.refresh()
            level = limit.level()
            if level is not None:  # an unlimited budget has no figure to show
                gauge.labels(provider).set(level)

        self.on_refresh(read)

    async def refresh(self) -> None:
        for refresher in self._refreshers:
            try:
                await refresher()
            except Exception:  # one unreadable figure must not hide the others
                log.warning("a metrics reading failed", exc_info=True)

    async def exposition(self) -> tuple[bytes, str]:
        """The text exposition (after `refresh`) and its content type."""
        await self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SlackCounter(AsyncRetryHandler):
    """A retry handler that never retries: slack_sdk shows each handler every attempt's answer
    (or error), which is the one place a 429 is seen before a later handler retries it."""

    def __init__(self, metrics: Metrics, base_url: str) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics
        self.base_url = base_url

    async def can_retry_async(
        self,
        *,
        state: Any,
        request: Any,
        response: Any = None,
        error: Exception | None = None,
    ) -> bool:
        url = str(getattr(request, "url", ""))
        method = url.removeprefix(self.base_url) if url.startswith(self.base_url) else "upload"
        if not SLACK_METHOD.match(method):
            method = "upload" if method == "upload" else UNKNOWN
        self.metrics.count_slack(method, _slack_result(response, error))
        return False


def _slack_result(response: Any, error: Exception | None) -> str:
    if response is None:
        return "unreachable" if error is not None else "error"
    if response.status_code == 429:
        return "ratelimited"
    body = response.body
    if response.status_code == 200 and (not isinstance(body, dict) or body.get("ok", True)):
        return "ok"
    return "error"


def endpoint(
    metrics: Metrics, *, token: str | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """The `GET /metrics` handler; with `token`, only for `Authorization: Bearer <token>`."""

    async def exposition(request: Request) -> Response:
        if token is not None and (refusal := _unauthorized(request, token)) is not None:
            return refusal
        body, content_type = await metrics.exposition()
        return Response(body, media_type=content_type)

    return exposition


def _unauthorized(request: Request, token: str) -> Response | None:
    """401 unless the request carries the bearer token (RFC 6750 §2.1, the scheme's name in
    any case as RFC 9110 §11.1 says). A missing and a wrong token both get 401 with a
    `WWW-Authenticate: Bearer` challenge (RFC 6750 §3: 403 is for a valid token that lacks a
    scope, and there are no scopes here); the wrong one adds `error="invalid_token"`."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        challenge = 'Bearer realm="metrics"'
    elif hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    else:
        challenge = 'Bearer realm="metrics", error="invalid_token"'
    return Response(
        "unauthorized\n",
        status_code=401,
        media_type="text/plain",
        headers={"WWW-Authenticate": challenge},
    )


class _Server(uvicorn.Server):
    """uvicorn beside another main loop (`socket`): the signals stay with the main program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Exporter:
    """`GET /metrics` on a port of its own, in this event loop (Socket Mode has no web app)."""

    def __init__(self, server: _Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task


async def serve_metrics(
    metrics: Metrics, *, host: str, port: int, access_log: bool = False
) -> Exporter:
    """Start serving `GET /metrics`; returns once the port is listening (0: any free port).
    `access_log` must be what any other uvicorn server of the process was given: uvicorn's
    `Config` switches the one `uvicorn.access` logger off for every server when it is False."""
    app = Starlette(routes=[Route("/metrics", endpoint(metrics), methods=["GET"])])
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=access_log)
    server = _Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start (port taken, say)
            raise RuntimeError("the metrics server stopped at start")
        await asyncio.sleep(0.01)
    return Exporter(server, task)
