"""The audit log is a hash chain on SQLite and PostgreSQL: rows hash the same after the round
trip, tampering in the database is named by its row, replicas appending at once still make one
chain, `billing-bot audit verify` says so, and the background check finds it batch by batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.state import GUARD_LOCK
from bot.cli import main
from bot.schedules.engine import LOCK_KEY
from bot.storage import store
from bot.storage.audit import APPEND_LOCK, AuditLog, ChainCheck, Entry, to_csv
from bot.storage.chain import GENESIS, Link, digest
from bot.storage.store import audit
from commands.secrets import MASK, register_secret

AT = datetime(2026, 5, 4, 9, 0, 1, 234567, tzinfo=UTC)


def entry(n: int, **changes: Any) -> Entry:
    values: dict[str, Any] = {
        "user_id": "U1",
        "channel": "C1",
        "command": "/voipcloud move-funds",
        "args": {"account": "10023", "amount": f"{n}.50"},
        "decision": "executed",
        "outcome": "done",
        "detail": f"run {n}",
        "provider": "voipcloud",
        "provider_status": 200,
        "duration_ms": 100 + n,
    }
    values.update(changes)
    return Entry(**values)


async def appended(engine: AsyncEngine, count: int) -> AuditLog:
    log = AuditLog(engine)
    for n in range(1, count + 1):
        await log.record(entry(n), at=AT + timedelta(seconds=n))
    return log


async def execute(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def chain_columns(engine: AsyncEngine) -> list[tuple[int, int, str, str]]:
    query = sa.select(audit.c.id, audit.c.seq, audit.c.prev_hash, audit.c.hash).order_by(audit.c.id)
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(query)).all()]


async def test_appended_rows_link_up_in_the_order_they_were_written(engine: AsyncEngine) -> None:
    log = await appended(engine, 3)
    rows = await chain_columns(engine)
    assert [seq for _, seq, _, _ in rows] == [1, 2, 3]
    assert rows[0][2] == GENESIS
    assert [prev for _, _, prev, _ in rows[1:]] == [h for _, _, _, h in rows[:2]]
    assert await log.head() == Link(3, rows[2][3])
    verdict = await log.verify()
    assert verdict.broken is None and verdict.rows == 3
    assert str(verdict) == f"intact: 3 rows, head 3 {rows[2][3]}"


async def test_an_empty_log_has_no_head(engine: AsyncEngine) -> None:
    log = AuditLog(engine)
    assert await log.head() is None
    assert str(await log.verify()) == "intact: 0 rows (the audit log is empty)"


async def test_the_whole_log_is_verified_a_batch_at_a_time(engine: AsyncEngine) -> None:
    log = await appended(engine, 7)
    for batch in (1, 3, 7, 100):
        assert (await log.verify(batch=batch)).rows == 7
    await execute(engine, "UPDATE audit SET detail = 'changed' WHERE seq = 6")
    assert str(await log.verify(batch=3)) == "row 6: edited (its contents do not match its hash)"


# --- the round trip ----------------------------------------------------------------------------

zones = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
)
# Any text a person can type (NUL, other scripts, emoji), longer than some columns hold.
texts = st.text(max_size=60)
numbers = st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1)
entries = st.builds(
    Entry,
    user_id=texts,
    channel=texts,
    command=st.text(max_size=130),
    args=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
    decision=texts,
    outcome=texts,
    detail=texts,
    provider=texts,
    provider_status=numbers,
    duration_ms=numbers,
    approval_id=numbers,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(entries, times), min_size=1, max_size=4))
async def test_rows_hash_the_same_after_the_round_trip_through_the_database(
    engine: AsyncEngine, written: list[tuple[Entry, datetime]]
) -> None:
    log = AuditLog(engine)
    for one, at in written:
        await log.record(one, at=at)
    verdict = await log.verify()
    assert verdict.broken is None, str(verdict)
    assert verdict.head == await log.head()


async def test_text_longer_than_its_column_is_cut_and_still_verifies(engine: AsyncEngine) -> None:
    log = AuditLog(engine)
    await log.record(entry(1, user_id="U" * 45, outcome="done" + " " * 40))
    async with engine.connect() as conn:
        user, outcome = (await conn.execute(sa.select(audit.c.user_id, audit.c.outcome))).one()
    assert (user, outcome) == ("U" * 40, "done" + " " * 26)
    assert (await log.verify()).broken is None


# --- tampering in the database -----------------------------------------------------------------


async def test_an_edited_row_is_named(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    await execute(engine, "UPDATE audit SET outcome = 'failed' WHERE seq = 3")
    assert str(await log.verify()) == "row 3: edited (its contents do not match its hash)"


async def test_an_edited_row_whose_hash_was_recomputed_breaks_the_next_link(
    engine: AsyncEngine,
) -> None:
    log = await appended(engine, 5)
    [row] = await log.links(2, 1)
    forged = {**row, "outcome": "failed"}
    new_hash = digest(3, row["prev_hash"], forged)
    await execute(engine, f"UPDATE audit SET outcome = 'failed', hash = '{new_hash}' WHERE seq = 3")
    assert str(await log.verify()) == "row 4: inserted out of sequence (it does not follow row 3)"


async def test_a_deleted_row_is_named_missing(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    await execute(engine, "DELETE FROM audit WHERE seq = 2")
    assert str(await log.verify()) == "row 2: missing (the next row is row 3)"


async def test_an_inserted_row_is_named(engine: AsyncEngine) -> None:
    log = await appended(engine, 4)
    # Room is made at row 2 (in two steps: the sequence numbers are unique at every moment).
    await execute(
        engine,
        "UPDATE audit SET seq = -(seq + 1) WHERE seq >= 2",
        "UPDATE audit SET seq = -seq WHERE seq < 0",
        "INSERT INTO audit (at, user_id, channel, command, args, decision, outcome, detail,"
        " provider, seq, prev_hash, hash) VALUES ('2026-05-04 09:00:02', 'U9', 'C1',"
        " '/voipcloud move-funds', '{}', 'executed', 'done', '', 'voipcloud', 2,"
        f" '{'ab' * 32}', '{'cd' * 32}')",
    )
    assert str(await log.verify()) == "row 2: inserted out of sequence (it does not follow row 1)"


async def test_swapped_rows_are_named_at_the_first_of_them(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    await execute(
        engine,
        "UPDATE audit SET seq = -1 WHERE seq = 2",
        "UPDATE audit SET seq = 2 WHERE seq = 4",
        "UPDATE audit SET seq = 4 WHERE seq = -1",
    )
    assert str(await log.verify()) == "row 2: inserted out of sequence (it does not follow row 1)"


async def test_the_newest_rows_deleted_show_only_against_an_anchor(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    head = await log.head()
    assert head is not None
    await execute(engine, "DELETE FROM audit WHERE seq >= 4")
    assert (await log.verify()).broken is None
    assert str(await log.verify(anchors=[head])) == (
        "row 4: missing (the log ends at row 3, but row 5 was anchored)"
    )


async def test_two_rows_cannot_take_one_place(engine: AsyncEngine) -> None:
    await appended(engine, 2)
    with pytest.raises(sa.exc.IntegrityError):
        await execute(
            engine,
            "INSERT INTO audit (at, user_id, channel, command, args, decision, outcome, detail,"
            " provider, seq, prev_hash, hash) VALUES ('2026-05-04 09:00:02', 'U9', 'C1', '/x',"
            f" '{{}}', 'ran', 'done', '', 'x', 2, '{'ab' * 32}', '{'cd' * 32}')",
        )


# --- replicas ----------------------------------------------------------------------------------


async def test_two_replicas_appending_at_once_make_one_chain(
    engine: AsyncEngine, database_url: str
) -> None:
    other = store.make_engine(database_url)  # another replica: its own pool of connections
    try:
        first, second = AuditLog(engine), AuditLog(other)
        await asyncio.gather(
            *(first.record(entry(n, user_id="U1")) for n in range(20)),
            *(second.record(entry(n, user_id="U2")) for n in range(20)),
        )
    finally:
        await other.dispose()
    rows = await chain_columns(engine)
    assert sorted(seq for _, seq, _, _ in rows) == list(range(1, 41))
    verdict = await AuditLog(engine).verify()
    assert verdict.broken is None and verdict.rows == 40


def test_the_append_lock_is_not_another_lock_of_the_bot() -> None:
    assert len({APPEND_LOCK, LOCK_KEY, GUARD_LOCK}) == 3


# --- the export --------------------------------------------------------------------------------


async def test_the_export_carries_the_chain_unmasked(engine: AsyncEngine) -> None:
    log = await appended(engine, 2)
    rows = await log.links(0, 10)
    secret = rows[1]["hash"][10:30]
    register_secret(secret)
    await log.record(entry(3, detail=f"saw {secret}"))
    rows = await log.links(0, 10)
    lines = to_csv(rows).decode().splitlines()
    assert lines[0].endswith(",seq,prev_hash,hash")
    assert lines[2].endswith(f",2,{rows[0]['hash']},{rows[1]['hash']}")
    assert f"saw {MASK}" in lines[3]  # the detail was redacted when written


# --- billing-bot audit verify ------------------------------------------------------------------


def verify_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    code = main(["audit", "verify"])
    out, err = capsys.readouterr()
    return code, out, err


def prepared(database_url: str, work: Callable[[AsyncEngine], Any]) -> None:
    async def run() -> None:
        await store.upgrade(database_url)
        engine = store.make_engine(database_url)
        try:
            await work(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_verify_exits_0_naming_the_head(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    heads: list[Link | None] = []

    async def work(engine: AsyncEngine) -> None:
        heads.append(await (await appended(engine, 4)).head())

    prepared(database_url, work)
    [head] = heads
    assert head is not None
    assert verify_command(monkeypatch, capsys, database_url) == (
        0,
        f"intact: 4 rows, head 4 {head.hash}\n",
        "",
    )


def test_verify_exits_1_naming_the_first_broken_row(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def work(engine: AsyncEngine) -> None:
        await appended(engine, 9)
        await execute(
            engine,
            "UPDATE audit SET detail = 'nothing happened' WHERE seq = 7",
            "DELETE FROM audit WHERE seq = 8",
        )

    prepared(database_url, work)
    assert verify_command(monkeypatch, capsys, database_url) == (
        1,
        "row 7: edited (its contents do not match its hash)\n",
        "",
    )


def test_verify_exits_2_when_the_log_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://billing:secret-pw-4417@127.0.0.1:9/billing"  # nothing listens on port 9
    code, out, err = verify_command(monkeypatch, capsys, url)
    assert (code, out) == (2, "")
    assert err.startswith("could not read the audit log (") and err.count("\n") == 1
    assert "secret-pw-4417" not in err


# --- the background check ----------------------------------------------------------------------


class CountingLog(AuditLog):
    """Counts the rows each read of the chain returns."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.reads: list[int] = []

    async def links(self, after: int, limit: int) -> list[dict[str, Any]]:
        rows = await super().links(after, limit)
        self.reads.append(len(rows))
        return rows


async def test_the_check_reads_a_batch_a_step_and_passes_over_and_over(
    engine: AsyncEngine,
) -> None:
    await appended(engine, 5)
    log = CountingLog(engine)
    check = ChainCheck(log, batch=2)
    for _ in range(3):
        await check.step()
    assert log.reads == [2, 2, 1]  # one pass: never more than a batch at a time
    head = await log.head()
    assert (check.ok, check.broken, check.anchor) == (True, None, head)
    await log.record(entry(6))
    for _ in range(4):
        await check.step()  # the next pass starts at row 1 again, and reaches the new row
    assert log.reads[3:] == [2, 2, 2, 0] and check.anchor == await log.head()
    assert check.anchor is not None and check.anchor.seq == 6


async def test_the_check_finds_an_old_row_edited_and_sees_it_repaired(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    log = await appended(engine, 4)
    check = ChainCheck(log, batch=10)
    await check.step()
    assert check.ok
    await execute(engine, "UPDATE audit SET detail = 'changed' WHERE seq = 1")
    with caplog.at_level(logging.WARNING, logger="bot.storage.audit"):
        await check.step()
        await check.step()  # found again: said once
    assert not check.ok
    assert str(check.broken) == "row 1: edited (its contents do not match its hash)"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "the audit log's hash chain is broken: row 1: edited (its contents do not match its hash)"
    ]
    await execute(engine, "UPDATE audit SET detail = 'run 1' WHERE seq = 1")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bot.storage.audit"):
        await check.step()
    assert check.ok and check.broken is None
    head = await log.head()
    assert head is not None
    assert [r.getMessage() for r in caplog.records] == [
        f"the audit log's hash chain verifies again: intact: 4 rows, head 4 {head.hash}"
    ]


async def test_the_check_stays_false_while_a_pass_runs_after_a_break(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    check = ChainCheck(log, batch=2)
    await execute(engine, "UPDATE audit SET detail = 'changed' WHERE seq = 2")
    await check.step()
    assert not check.ok
    await execute(engine, "UPDATE audit SET detail = 'run 2' WHERE seq = 2")
    await check.step()
    await check.step()
    assert not check.ok  # repaired, but this pass has not reached the head yet
    await check.step()
    assert check.ok


async def test_the_check_finds_the_newest_rows_deleted(engine: AsyncEngine) -> None:
    log = await appended(engine, 5)
    check = ChainCheck(log, batch=10)
    await check.step()
    await execute(engine, "DELETE FROM audit WHERE seq = 5")
    await check.step()
    assert not check.ok
    assert str(check.broken) == "row 5: missing (the log ends at row 4, but row 5 was anchored)"
