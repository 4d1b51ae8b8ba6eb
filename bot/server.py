"""HTTP mode: Starlette routes around the Bolt app, run by uvicorn.

POST /slack/events   slash commands, interactivity, events (signature checked by Bolt)
GET  /healthz        the process is up
GET  /readyz         200 only when the database answers
GET  /metrics        Prometheus text exposition (see bot/metrics.py)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.app import build_app, group_lookup, web_client
from bot.config import Settings
from bot.metrics import Metrics, endpoint
from bot.replies import SlackSurface
from bot.runtime import Runtime, open_runtime
from bot.store import ping


def build_web(settings: Settings, *, sweep_every: float = 30.0, **options: object) -> Starlette:
    """The ASGI app. The runtime opens in the lifespan, so nothing runs at import time."""
    state: dict[str, object] = {}

    async def events(request: Request) -> Response:
        handler = state.get("handler")
        if not isinstance(handler, AsyncSlackRequestHandler):
            return JSONResponse({"error": "starting"}, status_code=503)
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        runtime = state.get("runtime")
        if isinstance(runtime, Runtime) and await ping(runtime.engine):
            return JSONResponse({"ok": True, "database": "reachable"})
        return JSONResponse({"ok": False, "database": "unreachable"}, status_code=503)

    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = web_client(settings, metrics)
        runtime = await open_runtime(
            settings,
            system_surface=lambda channel: SlackSurface(client, channel=channel, user=""),
            group_members=group_lookup(client),
            metrics=metrics,
            **options,  # type: ignore[arg-type]
        )
        state["runtime"] = runtime
        state["handler"] = AsyncSlackRequestHandler(build_app(settings, runtime.dispatcher, client))
        runtime.start_sweeper(sweep_every)
        runtime.start_scheduler()
        try:
            yield
        finally:
            await runtime.close()

    routes = [
        Route("/slack/events", events, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", endpoint(metrics), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
