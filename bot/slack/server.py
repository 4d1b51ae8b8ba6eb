"""HTTP mode: Starlette routes around the Bolt app, run by uvicorn.

POST /slack/events   slash commands, interactivity, events (signature checked by Bolt); bodies
                     over 1 MB (413) and bodies Bolt cannot read (400) are refused first
GET  /healthz        the process is up
GET  /readyz         200 only when the database can be written (see bot/ops/health.py)
GET  /metrics        Prometheus text exposition (see bot/ops/metrics.py), only for
                     `Authorization: Bearer <METRICS_TOKEN>`; not served here (404) without
                     METRICS_TOKEN. `metrics_port` serves it on a port of its own, as `socket`.

Only POST /slack/events must face the internet; a proxy in front exposes that path alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

from slack_bolt.adapter.starlette.async_handler import (
    AsyncSlackRequestHandler,
    to_async_bolt_request,
    to_starlette_response,
)
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.config import Settings
from bot.ops.metrics import Metrics, endpoint, serve_metrics
from bot.runtime import Runtime, open_slack_runtime, slack_app
from bot.slack.app import settle_heap
from bot.slack.input_limits import (
    MAX_BODY_BYTES,
    BodyTooLarge,
    malformed,
    read_body,
    refuse_long_command_text,
)

log = logging.getLogger(__name__)


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    """The request as Bolt's Starlette adapter builds it, but a slash command whose text holds
    the word "payload" stays a slash command: Bolt's `parse_body` reads any form body containing
    that word as an interactivity payload and finds nothing (slack_bolt/request/internals.py)."""
    bolt = to_async_bolt_request(request, body)
    text = body.decode("utf-8", errors="replace")
    if not bolt.body and text and not text.lstrip().startswith("{"):
        form = dict(parse_qsl(text, keep_blank_values=True))
        if form and "payload" not in form:
            bolt.body = form
            bolt.context = build_async_context(AsyncBoltContext({}), form)
    return bolt


def build_web(
    settings: Settings,
    *,
    sweep_every: float = 30.0,
    freeze_heap: bool = False,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    **options: object,
) -> Starlette:
    """The ASGI app. The runtime opens in the lifespan, so nothing runs at import time.
    `freeze_heap`: once started, leave what start-up built out of garbage collections
    (`settle_heap`; for the `serve` process, not for apps a test starts and stops).
    `metrics_port`: also serve `GET /metrics`, open, on that port (for a private network)."""
    state: dict[str, object] = {}

    async def events(request: Request) -> Response:
        # The body is read here, capped, and checked the way Bolt will read it, so a huge or
        # unreadable request is refused with a 4xx instead of filling memory or raising inside
        # Bolt; then Bolt gets it as its Starlette adapter would hand it over.
        try:
            body = await read_body(request)
        except BodyTooLarge:
            log.warning("refused a request: its body is over %s bytes", f"{MAX_BODY_BYTES:,}")
            return JSONResponse({"error": "request body too large"}, status_code=413)
        reason = malformed(request.headers, body)
        if reason is not None:
            log.warning("refused a request: %s", reason)
            return JSONResponse({"error": "bad request"}, status_code=400)
        handler = state.get("handler")
        if not isinstance(handler, AsyncSlackRequestHandler):
            return JSONResponse({"error": "starting"}, status_code=503)
        answer = await handler.app.async_dispatch(bolt_request(request, body))
        return to_starlette_response(answer)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        runtime = state.get("runtime")
        if not isinstance(runtime, Runtime):
            return JSONResponse({"ok": False, "database": "starting"}, status_code=503)
        problem = await runtime.health.check()  # the write probe, reported (bot/ops/database.py)
        if problem is not None:
            return JSONResponse({"ok": False, "database": problem}, status_code=503)
        return JSONResponse({"ok": True, "database": "writable"})

    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await open_slack_runtime(settings, metrics, **options)
        state["runtime"] = runtime
        # The text limit comes first, before any listener parses text.
        bolt = slack_app(runtime, middleware=[refuse_long_command_text])
        state["handler"] = AsyncSlackRequestHandler(bolt)
        runtime.start_deliveries()
        runtime.start_sweeper(sweep_every)
        runtime.start_scheduler()
        exporter = None
        try:
            if metrics_port is not None:
                exporter = await serve_metrics(
                    metrics,
                    host=metrics_host,
                    port=metrics_port,
                    access_log=settings.log_level == "DEBUG",  # as `billing-bot serve` has it
                )
            if freeze_heap:
                settle_heap()
            yield
        finally:
            if exporter is not None:
                await exporter.stop()
            await runtime.close()

    routes = [
        Route("/slack/events", events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if settings.metrics_token is not None:
        token = settings.metrics_token.get_secret_value()
        routes.append(Route("/metrics", endpoint(metrics, token=token), methods=["GET"]))
    return Starlette(routes=routes, lifespan=lifespan)
