"""`billing-bot keys rotate` and check's key line: enrolments sealed under BILLING_SECRET_KEY."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
import sqlalchemy as sa

from bot import cli
from bot.approvals.stepup import StepUp
from bot.runtime import load_settings
from bot.storage import store
from bot.storage.sealed import Keyring
from bot.storage.store import step_up

OLD = os.urandom(32)
NEW = os.urandom(32)


def text(key: bytes) -> str:
    return base64.b64encode(key).decode()


def enrol(database_url: str, key: bytes, *users: str) -> None:
    async def run() -> None:
        await store.upgrade(database_url)
        engine = store.make_engine(database_url)
        try:
            for user in users:
                await StepUp(engine, Keyring(key), clock=store.utcnow).enroll(user)
        finally:
            await engine.dispose()

    asyncio.run(run())


async def sealed_seeds(database_url: str) -> dict[str, str]:
    engine = store.make_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(step_up.c.user_id, step_up.c.seed))).all()
    finally:
        await engine.dispose()
    return {str(user): str(seed) for user, seed in rows}


@pytest.fixture(autouse=True)
def _logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`billing-bot keys rotate` sets up the process's logging (quiet libraries) as every
    command does; run here, in a test worker, that would silence the libraries' logs for the
    tests that come after it, so it is left out."""
    monkeypatch.setattr(cli, "_logging", lambda *args, **kwargs: None)


def key_line(monkeypatch: pytest.MonkeyPatch, key: bytes | None) -> str:
    if key is None:
        monkeypatch.delenv("BILLING_SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("BILLING_SECRET_KEY", text(key))
    monkeypatch.delenv("BILLING_SECRET_KEY_PREVIOUS", raising=False)
    return asyncio.run(cli._check_key(load_settings()))


def test_a_rotation_reseals_every_enrolment_and_check_then_reads_them(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert key_line(monkeypatch, OLD).startswith("step-up key: FAILED — the enrolments could not")
    enrol(database_url, OLD)  # migrated, nobody enrolled
    assert key_line(monkeypatch, OLD) == "step-up key: ok (no enrolment stored yet)"
    enrol(database_url, OLD, "U2", "U3")
    assert key_line(monkeypatch, OLD) == "step-up key: ok (it opens the stored enrolments)"
    assert key_line(monkeypatch, NEW).startswith("step-up key: FAILED — it does not open")
    capsys.readouterr()

    monkeypatch.setenv("BILLING_SECRET_KEY", text(NEW))
    monkeypatch.setenv("BILLING_SECRET_KEY_PREVIOUS", text(OLD))
    code = cli.main(["keys", "rotate"])
    out, err = capsys.readouterr()

    assert code == 0, err
    assert out.strip() == (
        "re-encrypted 2 step-up enrolments under BILLING_SECRET_KEY; unset "
        "BILLING_SECRET_KEY_PREVIOUS now"
    )
    assert key_line(monkeypatch, NEW) == "step-up key: ok (it opens the stored enrolments)"
    assert key_line(monkeypatch, OLD).startswith("step-up key: FAILED")
    for key in (OLD, NEW):
        assert text(key) not in out + err


def test_a_rotation_that_cannot_open_a_seed_changes_nothing(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    enrol(database_url, OLD, "U2")
    enrol(database_url, os.urandom(32), "U3")
    before = asyncio.run(sealed_seeds(database_url))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BILLING_SECRET_KEY", text(NEW))
    monkeypatch.setenv("BILLING_SECRET_KEY_PREVIOUS", text(OLD))
    code = cli.main(["keys", "rotate"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.strip() == (
        "keys rotate: FAILED — the seed of U3 opens with neither key; nothing was changed"
    )
    assert asyncio.run(sealed_seeds(database_url)) == before  # nothing was resealed
    assert key_line(monkeypatch, OLD).startswith("step-up key: FAILED")  # U3's opens with none


def test_a_rotation_needs_both_keys_and_check_says_when_none_is_set(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/bot.db")
    monkeypatch.setenv("BILLING_SECRET_KEY", text(NEW))
    code = cli.main(["keys", "rotate"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == (
        "configuration error: BILLING_SECRET_KEY_PREVIOUS: is required for this command"
    )
    assert key_line(monkeypatch, None) == (
        "step-up key: not set (step-up codes are off; a policy with step_up needs it)"
    )
