"""`billing-bot console`: its flags, the files it keeps beside the database, its logging, and
`run_console`, which opens the runtime on sandboxes and hands the console what it uses of it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from bot.config import Settings
from bot.console.app import CONSOLE_CHANNEL, CONSOLE_USER, SLACK_USER, Console
from bot.console.prompt import PromptLoop, read_lines
from bot.console.screen import ScreenLog
from bot.console.services import Intake, Providers
from bot.console.steps import StepRunner
from bot.runtime import ConfigError, open_runtime
from bot.surface import Surface
from commands.sandbox_state import StateError, load_state, save_state
from commands.secrets import install_log_redaction

DESCRIPTION = """\
Try the bot in a terminal. It runs the real dispatcher, roles, two-person approvals, audit log
and schedules with the same configuration as `serve` (.env and the environment). Providers
without credentials answer from built-in sandboxes. Replies print as text; type a button's
number to click it. With no roles configured, everyone in the console is admin."""

EPILOG = """\
kept between runs, beside the SQLite database (DATABASE_URL, default ./billing-bot.db):
  billing-bot.db           approvals, audit log, schedules
  billing-bot.sandboxes    the sandboxes' data (sequences, documents, customers, accounts)
  billing-bot.history      the command history
  billing-bot.console.log  warnings and errors in full
  --fresh deletes the first two, so they start afresh together.

keys:
  Tab         complete commands, action words, name= arguments and their choices
  Up, Ctrl-R  search the history
  Ctrl-C      cancel the running commands or the form; twice at an empty prompt: leave
  Ctrl-D      leave
  :as U2      act as another Slack user (the second person of an approval)

Schedules post to the console's own channel (#console) unless BILLING_CHANNEL is set.

examples:
  billing-bot console
  billing-bot console --as U0APPROVER
  billing-bot console -c "/invoicexpress sequences"
"""


def slack_user_id(value: str) -> str:
    """argparse type for `--as`: a Slack user ID such as U0123ABCD (or W… on Enterprise Grid)."""
    if not SLACK_USER.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Slack user ID: U or W followed by capital letters and digits, "
            "like U0123ABCD"
        )
    return value


def add_console_parser(sub: Any) -> argparse.ArgumentParser:
    """`billing-bot console` and its flags (`sub` is the CLI's subparsers)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "console",
        help="try the bot in a terminal, on sandboxes",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        dest="one",
        metavar="COMMAND",
        help="run one command, print its answers and exit: 0 done, 1 refused or failed, "
        "130 interrupted",
    )
    parser.add_argument(
        "--as",
        dest="user",
        type=slack_user_id,
        default=CONSOLE_USER,
        metavar="USER_ID",
        help="act as this Slack user ID (U or W, then capitals and digits); default %(default)s",
    )
    parser.add_argument(
        "--files",
        default="billing-bot-files",
        metavar="DIR",
        help="folder for the PDFs, CSVs and charts that replies carry; default %(default)s/",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start afresh: delete the SQLite database and the sandboxes' saved data (by "
        "default both are kept between runs; the history stays either way)",
    )
    return parser


@dataclass(frozen=True)
class ConsoleFiles:
    """What the console keeps beside its database, named after it (billing-bot.db →
    billing-bot.history, billing-bot.sandboxes, billing-bot.console.log). With a server database
    (PostgreSQL) they are kept in the working directory."""

    database: Path | None  # the SQLite file, or None for a server database
    history: Path
    sandboxes: Path
    log: Path

    @classmethod
    def beside(cls, database_url: str) -> ConsoleFiles:
        url = make_url(database_url)
        database = url.database if url.get_backend_name() == "sqlite" else None
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            stem = path.with_name(path.stem)
            return cls(path, *_beside(stem))
        return cls(None, *_beside(Path("billing-bot")))

    def remove_database(self) -> None:
        """Delete the SQLite database (and its journal files)."""
        assert self.database is not None
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.database.with_name(self.database.name + suffix).unlink(missing_ok=True)


def _beside(stem: Path) -> tuple[Path, Path, Path]:
    def named(suffix: str) -> Path:
        return stem.with_name(stem.name + suffix)

    return named(".history"), named(".sandboxes"), named(".console.log")


def is_terminal(stream: TextIO = sys.stdin) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console_logging(log_file: Path) -> None:
    """Records from INFO up go to the console's log file, redacted; the screen gets one line
    per warning (`ScreenLog`), never a traceback."""
    install_log_redaction()
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    for noisy in ("httpx", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass(frozen=True)
class Wiring:
    """What the console is handed from the runtime."""

    intake: Intake
    providers: Providers
    open_roles: bool  # no roles configured: everyone in the console is admin
    sweep: Callable[[], Awaitable[None]]  # settle approvals an earlier run left behind
    start_scheduler: Callable[[], None]
    steps: StepRunner  # `:step`: Workflow Builder steps without Slack


async def run_console(settings: Settings, args: argparse.Namespace) -> int:
    """`billing-bot console`: the runtime on sandboxes, state kept beside the database.

    The one place that wires the console to the runtime: the dispatcher is its intake, the
    catalog its providers, and the approval flow sweeps before the prompt opens."""
    run = _Run.prepare(settings, args)
    console_logging(run.files.log)
    runtime = await open_runtime(
        run.settings, system_surface=run.system_surface, use_sandboxes=True, open_console=True
    )
    wiring = Wiring(
        intake=runtime.dispatcher,
        providers=runtime.catalog,
        open_roles=runtime.roles.open_console,
        sweep=runtime.flow.sweep,
        start_scheduler=runtime.start_scheduler,
        steps=runtime.steps,
    )
    try:
        return await run.converse(wiring)
    finally:
        await runtime.close()


@dataclass
class _Run:
    """One `billing-bot console`: its settings and files, notes for the banner and, once made,
    its console (schedules and approval cards of other channels post through it)."""

    args: argparse.Namespace
    settings: Settings
    files: ConsoleFiles
    notes: list[str]
    database_existed: bool
    own_channel: bool
    console: Console | None = None

    @classmethod
    def prepare(cls, settings: Settings, args: argparse.Namespace) -> _Run:
        """`--fresh` deletes the database and the sandboxes' data; without BILLING_CHANNEL,
        schedules post to the console's own channel."""
        files = ConsoleFiles.beside(settings.database_url)
        notes: list[str] = []
        if args.fresh:
            if files.database is None:
                raise ConfigError(
                    "--fresh deletes a SQLite database, but DATABASE_URL names a server database; "
                    "point DATABASE_URL at a new database instead"
                )
            files.remove_database()
            files.sandboxes.unlink(missing_ok=True)
            notes.append(f"Started afresh: {files.database} and {files.sandboxes} were deleted.")
        database_existed = files.database is None or files.database.exists()
        own_channel = not settings.billing_channel
        if own_channel:
            settings = settings.model_copy(update={"billing_channel": CONSOLE_CHANNEL})
        return cls(args, settings, files, notes, database_existed, own_channel)

    def system_surface(self, target: str) -> Surface:
        assert self.console is not None, "the console is made before anything posts"
        return self.console.surface(channel=target, user="")

    async def converse(self, wiring: Wiring) -> int:
        """Load the sandboxes' saved data, then run `-c`, the lines of a pipe or the prompt."""
        args, files, notes = self.args, self.files, self.notes
        sandboxes = {r.provider.name: r.sandbox for r in wiring.providers.runtimes if r.sandbox}
        if sandboxes and files.sandboxes.exists() and self.database_existed:
            try:
                load_state(files.sandboxes, sandboxes)
            except StateError as exc:
                notes.append(f"The sandboxes start with their sample data: {exc}.")
        elif sandboxes and self.database_existed and files.database is not None:
            notes.append(
                f"{files.database} has history but no sandbox data was saved beside it, so the "
                "sandboxes start with their sample data (--fresh starts both afresh)."
            )

        def save() -> None:
            if sandboxes:
                save_state(files.sandboxes, sandboxes)

        terminal = is_terminal(sys.stdin) and is_terminal(sys.stdout)
        console = Console(
            intake=wiring.intake,
            providers=wiring.providers,
            open_roles=wiring.open_roles,
            user=args.user,
            channel=self.settings.billing_channel or CONSOLE_CHANNEL,
            files_dir=Path(args.files),
            interactive=args.one is None and terminal,
            on_change=save,
            steps=wiring.steps,
        )
        self.console = console
        logging.getLogger().addHandler(ScreenLog(console.transcript, files.log))
        try:
            save()
            if args.one is not None:
                return await console.run_one(args.one)
            console.banner(own_channel=self.own_channel, notes=notes)
            await wiring.sweep()
            wiring.start_scheduler()
            if not terminal:
                return await read_lines(console, sys.stdin)
            return await PromptLoop(console).run(history=files.history)
        finally:
            save()
