"""Step-up codes in the database: enrolment, the code window, replays, the lockout, the keys.

Codes are made with pyotp from the enrolment's seed, at the times of a clock moved by hand, so
every window edge is exact. Two `StepUp`s on two engines stand for two replicas."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.approvals.stepup import LOCK, Enrolment, NoKey, StepUp, Verdict
from bot.storage import store
from bot.storage.sealed import KEY_HINT, Keyring, Unreadable, key_bytes
from bot.storage.store import step_up
from commands.secrets import redact
from tests.support import Clock

# Half-way through a 30-second step, so a step either side is exactly ±30 s away.
START = datetime(2030, 1, 6, 9, 0, 15, tzinfo=UTC)
KEY = os.urandom(32)
OTHER_KEY = os.urandom(32)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def codes(engine: AsyncEngine, clock: Clock) -> StepUp:
    return StepUp(engine, Keyring(KEY), clock=clock)


async def enrolled(codes: StepUp, clock: Clock, user: str = "U2") -> pyotp.TOTP:
    """`user` enrolled and confirmed a step ago (so the current step's code is still fresh)."""
    seed = await codes.enroll(user)
    assert seed is not None
    totp = pyotp.TOTP(seed.seed)
    before = clock.now - timedelta(seconds=30)
    assert (await codes.confirm(user, totp.at(before))).verdict is Verdict.OK
    return totp


async def stored(engine: AsyncEngine, user: str = "U2") -> dict[str, object]:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(step_up).where(step_up.c.user_id == user))).mappings()
        return dict(row.one())


async def test_an_enrolment_counts_only_once_its_first_code_confirms_it(codes: StepUp) -> None:
    assert await codes.status("U2") is Enrolment.NONE
    seed = await codes.enroll("U2")
    assert seed is not None
    totp = pyotp.TOTP(seed.seed)
    assert await codes.status("U2") is Enrolment.PENDING
    assert (await codes.verify("U2", totp.at(START))).verdict is Verdict.NOT_ENROLLED
    wrong = await codes.confirm("U2", totp.at(START - timedelta(hours=1)))
    assert (wrong.verdict, wrong.tries_left) == (Verdict.WRONG, 4)
    assert (await codes.confirm("U2", totp.at(START))).verdict is Verdict.OK
    assert await codes.status("U2") is Enrolment.ENROLLED
    assert (await codes.confirm("U2", totp.at(START))).verdict is Verdict.NOT_ENROLLED
    assert await codes.enroll("U2") is None  # enrolled: an admin resets first
    assert seed.uri == f"otpauth://totp/billing-bot:U2?secret={seed.seed}&issuer=billing-bot"
    assert seed.qr_png.startswith(b"\x89PNG\r\n\x1a\n")


async def test_enrolling_again_before_confirming_replaces_the_seed(codes: StepUp) -> None:
    first = await codes.enroll("U2")
    second = await codes.enroll("U2")
    assert first is not None and second is not None and first.seed != second.seed
    old = await codes.confirm("U2", pyotp.TOTP(first.seed).at(START))
    assert old.verdict is Verdict.WRONG
    assert (await codes.confirm("U2", pyotp.TOTP(second.seed).at(START))).verdict is Verdict.OK


@pytest.mark.parametrize(
    ("offset", "verdict"),
    [(-60, "wrong code"), (-30, "ok"), (0, "ok"), (30, "ok"), (60, "wrong code")],
)
async def test_codes_one_step_either_side_pass_and_two_steps_away_do_not(
    codes: StepUp, clock: Clock, offset: int, verdict: str
) -> None:
    totp = await enrolled(codes, clock)
    clock.advance(seconds=60)  # the confirming code is now two steps old
    check = await codes.verify("U2", totp.at(clock.now + timedelta(seconds=offset)))
    assert check.verdict == verdict


async def test_a_code_passes_once_and_no_older_code_passes_after_it(
    codes: StepUp, clock: Clock, engine: AsyncEngine
) -> None:
    totp = await enrolled(codes, clock)
    newer = totp.at(clock.now + timedelta(seconds=30))
    assert (await codes.verify("U2", newer)).verdict is Verdict.OK
    assert (await codes.verify("U2", newer)).verdict is Verdict.REPLAYED
    assert (await codes.verify("U2", totp.at(clock.now))).verdict is Verdict.REPLAYED
    assert (await stored(engine))["failures"] == 0  # a replay is not a wrong code
    clock.advance(seconds=60)
    assert (await codes.verify("U2", totp.at(clock.now))).verdict is Verdict.OK


async def test_five_wrong_codes_in_a_row_lock_step_up_for_fifteen_minutes(
    codes: StepUp, clock: Clock
) -> None:
    totp = await enrolled(codes, clock)
    wrong = totp.at(clock.now - timedelta(hours=1))
    left = [(await codes.verify("U2", wrong)).tries_left for _ in range(4)]
    locking = await codes.verify("U2", wrong)
    locked_right = await codes.verify("U2", totp.at(clock.now))
    clock.advance(minutes=14, seconds=59)
    still = await codes.verify("U2", totp.at(clock.now))
    clock.advance(seconds=1)
    after = await codes.verify("U2", totp.at(clock.now))
    again = await codes.verify("U2", totp.at(clock.now))  # the lock's last moment is over too

    assert left == [4, 3, 2, 1]
    assert (locking.verdict, locking.tries_left) == (Verdict.WRONG, 0)
    assert locking.locked_until == START + LOCK
    assert (locked_right.verdict, locked_right.tries_left) == (Verdict.LOCKED, 0)
    assert locked_right.locked_until == START + LOCK
    assert still.verdict is Verdict.LOCKED
    assert after.verdict is Verdict.OK
    assert again.verdict is Verdict.REPLAYED


async def test_codes_tried_while_locked_neither_pass_nor_lengthen_the_lock(
    codes: StepUp, clock: Clock, engine: AsyncEngine
) -> None:
    totp = await enrolled(codes, clock)
    wrong = totp.at(clock.now - timedelta(hours=1))
    for _ in range(5):
        await codes.verify("U2", wrong)
    clock.advance(minutes=10)
    tried = await codes.verify("U2", "123")
    row = await stored(engine)
    assert tried.verdict is Verdict.LOCKED
    assert (row["failures"], row["locked_until"]) == (0, START + LOCK)


async def test_wrong_codes_count_for_their_own_person_only(
    codes: StepUp, clock: Clock, engine: AsyncEngine
) -> None:
    totp = await enrolled(codes, clock, "U2")
    await enrolled(codes, clock, "U3")
    wrong = totp.at(clock.now - timedelta(hours=1))
    for _ in range(5):
        await codes.verify("U2", wrong)
    other = await stored(engine, "U3")
    assert (other["failures"], other["locked_until"]) == (0, None)


async def test_a_code_in_use_leaves_the_enrolment_as_confirmed(
    codes: StepUp, clock: Clock, engine: AsyncEngine
) -> None:
    totp = await enrolled(codes, clock)
    clock.advance(minutes=5)
    assert (await codes.verify("U2", totp.at(clock.now))).verdict is Verdict.OK
    assert (await stored(engine))["confirmed_at"] == START


async def test_a_valid_code_starts_the_count_of_wrong_ones_again(
    codes: StepUp, clock: Clock
) -> None:
    totp = await enrolled(codes, clock)
    wrong = totp.at(clock.now - timedelta(hours=1))
    for _ in range(4):
        await codes.verify("U2", wrong)
    assert (await codes.verify("U2", totp.at(clock.now))).verdict is Verdict.OK
    left = [(await codes.verify("U2", wrong)).tries_left for _ in range(4)]
    assert left == [4, 3, 2, 1]


async def test_two_replicas_given_one_code_at_once_accept_it_once(
    codes: StepUp, clock: Clock, database_url: str
) -> None:
    totp = await enrolled(codes, clock)
    other_engine = store.make_engine(database_url)
    replica = StepUp(other_engine, Keyring(KEY), clock=clock)
    try:
        code = totp.at(clock.now)
        checks = await asyncio.gather(*(s.verify("U2", code) for s in [codes, replica] * 3))
    finally:
        await other_engine.dispose()
    assert sorted(c.verdict for c in checks) == [Verdict.OK] + [Verdict.REPLAYED] * 5


async def test_wrong_codes_on_two_replicas_at_once_all_count(
    codes: StepUp, clock: Clock, database_url: str
) -> None:
    totp = await enrolled(codes, clock)
    other_engine = store.make_engine(database_url)
    replica = StepUp(other_engine, Keyring(KEY), clock=clock)
    wrong = totp.at(clock.now - timedelta(hours=1))
    try:
        await asyncio.gather(*(s.verify("U2", wrong) for s in [codes, replica, codes, replica]))
        fifth = await replica.verify("U2", wrong)
    finally:
        await other_engine.dispose()
    assert (fifth.verdict, fifth.locked_until) == (Verdict.WRONG, START + LOCK)


async def test_a_reset_forgets_the_enrolment(codes: StepUp, clock: Clock) -> None:
    totp = await enrolled(codes, clock)
    assert await codes.reset("U2") is True
    assert await codes.reset("U2") is False
    assert await codes.status("U2") is Enrolment.NONE
    assert (await codes.verify("U2", totp.at(clock.now))).verdict is Verdict.NOT_ENROLLED


async def test_seeds_rest_sealed_and_open_only_for_their_owner(
    codes: StepUp, engine: AsyncEngine
) -> None:
    seed = await codes.enroll("U2")
    assert seed is not None
    row = await stored(engine)
    sealed = str(row["seed"])
    assert sealed.startswith("v1.") and seed.seed not in sealed
    assert Keyring(KEY).open(sealed, "U2") == seed.seed
    with pytest.raises(Unreadable):
        Keyring(KEY).open(sealed, "U3")  # the owner is the associated data
    with pytest.raises(Unreadable):
        Keyring(OTHER_KEY).open(sealed, "U2")
    with pytest.raises(Unreadable, match="^no configured key opens it$"):
        Keyring(KEY).open(sealed[:-4] + "AAAA", "U2")
    with pytest.raises(Unreadable, match="^not a sealed value$"):
        Keyring(KEY).open("plain seed", "U2")
    with pytest.raises(Unreadable, match="^not a sealed value$"):
        Keyring(KEY).open("v1.AAAAA", "U2")  # base64 cannot end there
    with pytest.raises(Unreadable, match="^no configured key opens it$"):
        Keyring(KEY).open("v1.AAAA", "U2")  # too short to hold a nonce
    assert redact(f"log line {seed.seed}") == "log line ••••••"  # a registered secret


async def test_a_rotation_reseals_every_seed_under_the_new_key(
    engine: AsyncEngine, clock: Clock
) -> None:
    old = StepUp(engine, Keyring(KEY), clock=clock)
    totps = {user: await enrolled(old, clock, user) for user in ("U2", "U3")}
    rotating = StepUp(engine, Keyring(OTHER_KEY, KEY), clock=clock)
    assert await rotating.rotate() == 2
    new = StepUp(engine, Keyring(OTHER_KEY), clock=clock)
    assert await new.readable() is True
    assert await old.readable() is False
    for user, totp in totps.items():
        assert (await new.verify(user, totp.at(clock.now))).verdict is Verdict.OK


async def test_a_rotation_changes_nothing_when_a_seed_opens_with_neither_key(
    engine: AsyncEngine, clock: Clock
) -> None:
    await StepUp(engine, Keyring(KEY), clock=clock).enroll("U2")
    await StepUp(engine, Keyring(os.urandom(32)), clock=clock).enroll("U3")
    before = [await stored(engine, u) for u in ("U2", "U3")]
    with pytest.raises(Unreadable, match="the seed of U3 opens with neither key"):
        await StepUp(engine, Keyring(OTHER_KEY, KEY), clock=clock).rotate()
    assert [await stored(engine, u) for u in ("U2", "U3")] == before


async def test_without_a_key_nothing_is_enrolled_or_checked(engine: AsyncEngine) -> None:
    codes = StepUp(engine, None, clock=lambda: START)
    with pytest.raises(NoKey, match="^BILLING_SECRET_KEY is not set$"):
        await codes.enroll("U2")
    with pytest.raises(NoKey):
        await codes.verify("U2", "123456")
    with pytest.raises(NoKey):
        await codes.rotate()
    with pytest.raises(NoKey):
        await codes.readable()
    assert await codes.status("U2") is Enrolment.NONE
    assert await StepUp(engine, Keyring(KEY), clock=lambda: START).readable() is None


def test_a_key_is_base64_of_32_bytes_standard_or_url_safe() -> None:
    raw = bytes(range(200, 232))
    assert key_bytes(base64.b64encode(raw).decode()) == raw
    assert key_bytes(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    assert key_bytes(" " + base64.b64encode(raw).decode() + "\n") == raw
    assert Keyring(KEY).open(Keyring(KEY).seal("sé", "Ü"), "Ü") == "sé"  # UTF-8 both ways
    for bad in [base64.b64encode(raw[:16]).decode(), "not base64 at all!", "", "ключ" * 11]:
        with pytest.raises(ValueError) as caught:
            key_bytes(bad)
        assert str(caught.value) == KEY_HINT


async def test_a_code_may_be_typed_with_spaces_and_is_masked_wherever_it_is_shown(
    codes: StepUp, clock: Clock
) -> None:
    totp = await enrolled(codes, clock)
    code = totp.at(clock.now)
    assert (await codes.verify("U2", f" {code[:3]} {code[3:]} ")).verdict is Verdict.OK
    assert redact(f"typed {code}") == "typed ••••••"


async def test_a_replica_that_did_not_enrol_masks_the_seeds_it_opens(
    engine: AsyncEngine, clock: Clock
) -> None:
    from commands.secrets import reset_secrets

    seed = await StepUp(engine, Keyring(KEY), clock=clock).enroll("U2")
    assert seed is not None
    for check in ("verify", "readable"):
        reset_secrets()  # another process: it never saw the enrolment
        other = StepUp(engine, Keyring(KEY), clock=clock)
        if check == "verify":
            await other.confirm("U2", pyotp.TOTP(seed.seed).at(clock.now))
        else:
            assert await other.readable() is True
        assert redact(seed.seed) == "••••••", check


async def test_an_enrolment_qr_is_the_link_at_six_pixels_a_module_with_a_border_of_four(
    codes: StepUp,
) -> None:
    import segno

    seed = await codes.enroll("U2")
    assert seed is not None
    width = int.from_bytes(seed.qr_png[16:20], "big")  # the PNG header's IHDR width
    expected, _ = segno.make(seed.uri, error="m").symbol_size(scale=6, border=4)
    assert seed.qr_png.startswith(b"\x89PNG\r\n\x1a\n") and width == expected


class Meanwhile(Keyring):
    """A keyring that, as it opens a seed (after the row was read, before the code is counted),
    lets another replica act on the row: a synchronous write to the SQLite file."""

    def __init__(self, key: bytes, path: str, statement: str) -> None:
        super().__init__(key)
        self.path, self.statement = path, statement

    def open(self, sealed: str, owner: str) -> str:
        import sqlite3

        with sqlite3.connect(self.path) as conn:
            conn.execute(self.statement)
        return super().open(sealed, owner)


LOCK_ELSEWHERE = "UPDATE step_up SET locked_until = '2030-01-06 09:30:15.000000'"
RESET_ELSEWHERE = "DELETE FROM step_up"


@pytest.mark.parametrize(
    ("statement", "right", "wrong"),
    [
        (LOCK_ELSEWHERE, Verdict.LOCKED, Verdict.LOCKED),
        (RESET_ELSEWHERE, Verdict.NOT_ENROLLED, Verdict.NOT_ENROLLED),
    ],
    ids=["locked", "reset"],
)
async def test_a_lock_or_reset_on_another_replica_mid_check_wins(
    codes: StepUp,
    clock: Clock,
    engine: AsyncEngine,
    database_url: str,
    statement: str,
    right: Verdict,
    wrong: Verdict,
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a synchronous write to the SQLite file stands for the other replica")
    totp = await enrolled(codes, clock)
    racing = StepUp(
        engine, Meanwhile(KEY, database_url.removeprefix("sqlite:///"), statement), clock=clock
    )
    valid = await racing.verify("U2", totp.at(clock.now))
    if statement == RESET_ELSEWHERE:
        await enrolled(codes, clock)
    invalid = await racing.verify("U2", totp.at(clock.now - timedelta(hours=1)))
    assert valid.verdict is right and invalid.verdict is wrong
    if right is Verdict.LOCKED:
        until = START + timedelta(minutes=30)  # as the other replica set it
        assert (valid.tries_left, valid.locked_until) == (0, until)
        assert (invalid.tries_left, invalid.locked_until) == (0, until)
