"""`/readyz` says whether the database can be written, not merely whether it answers: a SQLite
file deleted or made read-only, or a directory made read-only, is 503 while `/healthz` stays 200,
and the bot is ready again once the file can be written."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.e2e import running_bot


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Nobody may write `path` (a file or a directory) inside the block: its mode loses every
    write bit, and, for root (whom modes do not stop), it gets the immutable attribute."""
    mode = path.stat().st_mode
    path.chmod(mode & 0o555)
    immutable = False
    try:
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if done.returncode != 0:
                pytest.skip("running as root, where only chattr +i makes a path read-only")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


async def readiness(http: httpx.AsyncClient, url: str) -> tuple[int, object, int]:
    ready = await http.get(f"{url}/readyz")
    health = await http.get(f"{url}/healthz")
    return ready.status_code, ready.json(), health.status_code


WRITABLE = (200, {"ok": True, "database": "writable"}, 200)
NOT_WRITABLE = (503, {"ok": False, "database": "not writable"}, 200)


async def test_a_deleted_database_file_makes_the_bot_unready(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with running_bot(f"sqlite:///{path}") as bot:
        before = await readiness(bot.http, bot.url)
        path.unlink()
        after = await readiness(bot.http, bot.url)

    assert before == WRITABLE
    assert after == NOT_WRITABLE


@pytest.mark.parametrize("target", ["file", "directory"])
async def test_a_read_only_database_makes_the_bot_unready_until_it_is_writable(
    tmp_path: Path, target: str
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "bot.db"
    async with running_bot(f"sqlite:///{path}") as bot:
        before = await readiness(bot.http, bot.url)
        with unwritable(path if target == "file" else folder):
            during = await readiness(bot.http, bot.url)
        after = await readiness(bot.http, bot.url)

    assert before == WRITABLE
    assert during == NOT_WRITABLE
    assert after == WRITABLE
