"""`billing-bot serve | socket | console | check | db upgrade | audit verify | keys rotate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dotenv import load_dotenv

import bot
from bot.config import Settings
from bot.console.entry import add_console_parser
from bot.ops.logs import configure
from bot.ops.metrics import Metrics, serve_metrics
from bot.runtime import (
    ConfigError,
    Runtime,
    load_settings,
    open_providers,
    prepare_database,
)

if TYPE_CHECKING:
    from bot.slack.history import Found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="billing-bot", description="Slack chat-ops for a billing team."
    )
    parser.add_argument("--version", action="version", version=f"billing-bot {bot.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="HTTP mode: POST /slack/events, /healthz, /readyz")
    serve.add_argument("--port", type=int, default=None, help="default $PORT or 3000")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="also serve GET /metrics, with no token, on this port (keep it private)",
    )
    serve.add_argument("--metrics-host", default="0.0.0.0")
    socket = sub.add_parser(
        "socket", help="Socket Mode (SLACK_APP_TOKEN), for hosts with no public URL"
    )
    socket.add_argument(
        "--metrics-port", type=int, default=None, help="serve GET /metrics on this port"
    )
    socket.add_argument("--metrics-host", default="0.0.0.0")
    add_console_parser(sub)
    sub.add_parser(
        "check", help="validate configuration, Slack token and channel, database and providers"
    )
    db = sub.add_parser("db", help="database tasks")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply the Alembic migrations")
    audit = sub.add_parser("audit", help="audit log tasks")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="recompute the audit log's hash chain; exit 1 naming the first broken row"
    )
    verify.add_argument(
        "--anchors",
        action="store_true",
        help="also check it against the anchors posted in BILLING_CHANNEL (read from Slack)",
    )
    keys = sub.add_parser("keys", help="the key that encrypts step-up enrolments")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser(
        "rotate",
        help=(
            "re-encrypt every step-up enrolment under BILLING_SECRET_KEY (the new key), "
            "opening them with BILLING_SECRET_KEY_PREVIOUS (the old one)"
        ),
    )
    return parser


def _logging(settings: Settings, *, at_least: int = logging.NOTSET) -> None:
    """LOG_LEVEL and LOG_FORMAT; `at_least` raises the level (the console stays quiet)."""
    level = max(logging.getLevelNamesMapping()[settings.log_level], at_least)
    configure(level, settings.log_format)


def _require(settings: Settings, *names: str) -> None:
    missing = [name for name in names if getattr(settings, name) is None]
    if missing:
        raise ConfigError(
            "\n".join(
                f"configuration error: {name.upper()}: is required for this command"
                for name in missing
            )
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if Path(".env").is_file():
        load_dotenv(".env", override=False)
    try:
        settings = load_settings()
        if args.command == "serve":
            _require(settings, "slack_bot_token", "slack_signing_secret")
            return _serve(settings, args)
        if args.command == "socket":
            _require(settings, "slack_bot_token", "slack_app_token")
            return asyncio.run(_socket(settings, args.metrics_host, args.metrics_port))
        if args.command == "console":
            try:
                return asyncio.run(_console(settings, args))
            except KeyboardInterrupt:  # Ctrl-C while it starts or stops: leave quietly
                print(file=sys.stderr)  # noqa: T201
                return 130
        if args.command == "check":
            return asyncio.run(_check(settings))
        if args.command == "keys":
            _require(settings, "billing_secret_key", "billing_secret_key_previous")
            return asyncio.run(_rotate(settings))
        if args.command == "db":
            _logging(settings)
            logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
            from bot.storage.store import upgrade_sync

            upgrade_sync(settings.database_url)
            print("database is at the latest migration")  # noqa: T201
            return 0
        if args.command == "audit":
            return asyncio.run(_verify_audit(settings, anchors=args.anchors))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201
        return 2
    return 2  # pragma: no cover - argparse requires a command


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bot.slack.server import build_web

    chosen = args.port or int(os.environ.get("PORT") or settings.port)
    if args.metrics_port is not None and args.metrics_port == chosen:
        raise ConfigError("configuration error: --metrics-port must differ from the HTTP port")
    _logging(settings)
    web = build_web(
        settings, freeze_heap=True, metrics_port=args.metrics_port, metrics_host=args.metrics_host
    )
    # log_config=None: uvicorn's own access formatter reads each record's args, which the log
    # redaction has already merged into the message; its lines go through `_logging`'s handler.
    # One access line per request (and per metrics scrape) is DEBUG material.
    uvicorn.run(
        web,
        host=args.host,
        port=chosen,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",
        lifespan="on",
    )
    return 0


async def open_socket(settings: Settings) -> tuple[Any, Runtime]:
    """What `socket` runs, not yet connected: the runtime (sweeper and scheduler started) and
    the Socket Mode handler of the app (`connect_async`, `start_async`, `close_async`)."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot.runtime import open_slack_runtime, slack_app

    runtime = await open_slack_runtime(settings, Metrics())
    runtime.start_sweeper()
    runtime.start_scheduler()
    runtime.start_deliveries()
    assert settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(
        slack_app(runtime),
        app_token=settings.slack_app_token.get_secret_value(),
    )
    return handler, runtime


async def _socket(settings: Settings, metrics_host: str, metrics_port: int | None) -> int:
    from bot.slack.app import settle_heap

    _logging(settings)
    handler, runtime = await open_socket(settings)
    settle_heap()
    exporter = None
    if metrics_port is not None:
        exporter = await serve_metrics(runtime.metrics, host=metrics_host, port=metrics_port)
    try:
        await handler.start_async()
    finally:
        if exporter is not None:
            await exporter.stop()
        await runtime.close()
    return 0


async def _console(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console.entry import run_console

    return await run_console(settings, args)


async def _verify_audit(settings: Settings, *, anchors: bool = False) -> int:
    """Exit 0 printing the head, 1 printing the first broken row (or, with `anchors`, what the
    channel and the anchors table disagree on), 2 if the log or the channel is unreadable."""
    from bot.anchors import EVENT_TYPE, compare, posted
    from bot.storage.anchors import AnchorStore
    from bot.storage.audit import AuditLog

    _logging(settings, at_least=logging.WARNING)
    found: Found | None = None
    if anchors:
        read_back = await _channel_anchors(settings, EVENT_TYPE)
        if isinstance(read_back, str):
            print(read_back, file=sys.stderr)  # noqa: T201
            return 2
        found = read_back
    try:
        engine = await prepare_database(settings)
        try:
            log = AuditLog(engine)
            comparison = None
            if found is not None:
                comparison = compare(
                    await AnchorStore(engine, log).kept(),
                    [posted(ts, payload) for ts, payload in found.messages],
                    str(settings.billing_channel),
                    others=found.others,
                )
            verdict = await log.verify(anchors=comparison.anchors if comparison else ())
        finally:
            await engine.dispose()
    except Exception as exc:  # the database is away or not migrated: say so, in one line
        print(f"could not read the audit log ({type(exc).__name__})", file=sys.stderr)  # noqa: T201
        return 2
    for line in comparison.lines() if comparison else []:
        print(line)  # noqa: T201
    print(verdict)  # noqa: T201
    return 0 if verdict.broken is None and (comparison is None or comparison.ok) else 1


async def _channel_anchors(settings: Settings, event_type: str) -> Found | str:
    """The anchors in BILLING_CHANNEL (`bot.slack.history.Found`), or the one sentence that
    says why they could not be read."""
    from slack_sdk.errors import SlackApiError

    from bot.slack.app import web_client
    from bot.slack.failures import classify
    from bot.slack.history import bot_messages

    channel = settings.billing_channel
    if settings.slack_bot_token is None or not channel:
        return (
            "audit verify --anchors reads the anchors back from the billing channel: set "
            "SLACK_BOT_TOKEN and BILLING_CHANNEL"
        )
    client = web_client(settings)
    try:
        return await bot_messages(client, channel, event_type)
    except SlackApiError as exc:
        error = classify(exc).error
        hint = HISTORY_HINTS.get(error, "")
        return f"could not read the anchors in BILLING_CHANNEL {channel}: Slack said {error}{hint}"
    except Exception as exc:  # Slack unreachable
        return f"could not read the anchors in BILLING_CHANNEL {channel} ({type(exc).__name__})"


HISTORY_HINTS = {
    "missing_scope": " (the bot token needs channels:history, or groups:history for a private "
    "channel: add them as in manifest.yml and reinstall the app)",
    "not_in_channel": " (invite the bot: /invite @billing-bot)",
    "channel_not_found": " (is BILLING_CHANNEL a channel ID the bot can see?)",
}


async def _check(settings: Settings) -> int:
    from bot.slack.app import web_client
    from bot.slack.check import check_slack
    from bot.storage import store

    _logging(settings, at_least=logging.WARNING)
    failed = False
    for slack in await check_slack(settings, web_client(settings)):
        print(slack.line())  # noqa: T201
        failed |= slack.ok is False
    engine = store.make_engine(settings.database_url)
    try:
        ok = await store.ping(engine)
    finally:
        await engine.dispose()
    print(f"database: {'ok' if ok else 'FAILED: not reachable'} ({engine.dialect.name})")  # noqa: T201
    failed |= not ok
    if ok:
        key = await _check_key(settings)
        print(key)  # noqa: T201
        failed |= "FAILED" in key
    for runtime in open_providers(use_sandboxes=False):
        title = runtime.provider.title
        if runtime.client is None:
            print(f"{title}: not configured (skipped)")  # noqa: T201
            continue
        try:
            summary = await runtime.provider.check(runtime.client)
            print(f"{title}: ok — {summary}")  # noqa: T201
        except Exception as exc:
            failed = True
            message = getattr(exc, "message", type(exc).__name__)
            print(f"{title}: FAILED — {message}")  # noqa: T201
        finally:
            from bot.runtime import close_client

            await close_client(runtime.client)
    return 1 if failed else 0


async def _check_key(settings: Settings) -> str:
    """BILLING_SECRET_KEY: set (its form was checked with the settings) and opening the stored
    enrolments, when there are some."""
    from bot.approvals.stepup import StepUp
    from bot.storage import store

    keyring = settings.keyring()
    if keyring is None:
        return "step-up key: not set (step-up codes are off; a policy with step_up needs it)"
    engine = store.make_engine(settings.database_url)
    try:
        opens = await StepUp(engine, keyring, clock=store.utcnow).readable()
    except Exception as exc:  # not migrated yet, or the database went away
        return f"step-up key: FAILED — the enrolments could not be read ({type(exc).__name__})"
    finally:
        await engine.dispose()
    if opens is None:
        return "step-up key: ok (no enrolment stored yet)"
    if opens:
        return "step-up key: ok (it opens the stored enrolments)"
    return (
        "step-up key: FAILED — it does not open the stored enrolments (a rotation half done? "
        "see `billing-bot keys rotate`)"
    )


async def _rotate(settings: Settings) -> int:
    """Every enrolment sealed again under the new key, in one transaction."""
    from bot.approvals.stepup import StepUp
    from bot.storage import store
    from bot.storage.sealed import Unreadable

    _logging(settings, at_least=logging.WARNING)
    engine = store.make_engine(settings.database_url)
    try:
        if store.is_sqlite(engine):
            await store.upgrade(settings.database_url)
        count = await StepUp(engine, settings.keyring(), clock=store.utcnow).rotate()
    except Unreadable as exc:
        print(f"keys rotate: FAILED — {exc}; nothing was changed", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await engine.dispose()
    print(  # noqa: T201
        f"re-encrypted {count} step-up enrolment{'s' * (count != 1)} under BILLING_SECRET_KEY; "
        "unset BILLING_SECRET_KEY_PREVIOUS now"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
