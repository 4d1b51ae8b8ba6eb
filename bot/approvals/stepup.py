"""Step-up codes: each approver's authenticator (RFC 6238 TOTP), kept in the database.

    enroll ─► new seed, sealed ─► row (pending) ─► otpauth:// URI + QR, for the person alone
    confirm(code) ─► the first valid code makes the row enrolled
    verify(code) ─► ok | wrong code | replayed | locked | not enrolled

Codes are pyotp's TOTP: 6 digits, 30-second steps, one step of drift either way (RFC 6238 §5.2
allows a window for clock drift; pyotp compares in constant time, `hmac.compare_digest`). A code
passes once per person: accepting it is one conditional UPDATE (`last_step < this step`), so the
same code cannot pass twice, not even on two replicas at once, and an older code after a newer
one is refused too (RFC 6238 §5.2: a verifier MUST NOT accept an OTP's second use). Wrong codes
are counted in the row as well: the fifth in a row locks that person's step-up for 15 minutes.
Seeds are sealed under BILLING_SECRET_KEY (`bot.storage.sealed`) and registered as secrets
whenever they are in memory, so no log line or message shows one.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
import segno
import sqlalchemy as sa
from pyotp.exceptions import OTPVerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.sealed import Keyring, Unreadable
from bot.storage.store import step_up
from commands.secrets import register_secret

ISSUER = "billing-bot"
TRIES = 5
LOCK = timedelta(minutes=15)
DRIFT = 1  # time-steps accepted either side of the current one


# Which enrolments a code is checked against: one waiting for its first code, or one in use.
PENDING = step_up.c.confirmed_at.is_(None)
CONFIRMED = step_up.c.confirmed_at.is_not(None)


class Verdict(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong code"
    REPLAYED = "replayed"
    LOCKED = "locked"
    NOT_ENROLLED = "not enrolled"


@dataclass(frozen=True)
class Check:
    """What a code was found to be; after a wrong one, how many tries are left before the lock
    (0: it locked now, until `locked_until`)."""

    verdict: Verdict
    tries_left: int = TRIES
    locked_until: datetime | None = None


class Enrolment(enum.StrEnum):
    NONE = "not enrolled"
    PENDING = "waiting for the first code"
    ENROLLED = "enrolled"


@dataclass(frozen=True)
class NewSeed:
    """What a new enrolment shows its person (only them): the otpauth:// URI, the seed for
    typing by hand, and the URI as a QR code (PNG)."""

    uri: str
    seed: str
    qr_png: bytes


class NoKey(Exception):
    """Step-up needs BILLING_SECRET_KEY, which is not set."""


class StepUp:
    def __init__(
        self,
        engine: AsyncEngine,
        keyring: Keyring | None,
        *,
        clock: Callable[[], datetime],
        tries: int = TRIES,
        lock: timedelta = LOCK,
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.clock = clock
        self.tries = tries
        self.lock = lock

    # --- enrolment -------------------------------------------------------------------------

    async def status(self, user: str) -> Enrolment:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(step_up.c.confirmed_at).where(step_up.c.user_id == user)
                )
            ).first()
        if row is None:
            return Enrolment.NONE
        return Enrolment.PENDING if row.confirmed_at is None else Enrolment.ENROLLED

    async def enroll(self, user: str) -> NewSeed | None:
        """A new seed for `user`, replacing one not yet confirmed; None when already enrolled
        (an admin's `/billing mfa reset` comes first)."""
        keyring = self._keyring()
        seed = pyotp.random_base32()  # 160 bits, the length RFC 4226 §4 recommends
        register_secret(seed)
        sealed = keyring.seal(seed, user)
        try:
            async with self.engine.begin() as conn:
                pending = sa.and_(step_up.c.user_id == user, step_up.c.confirmed_at.is_(None))
                await conn.execute(step_up.delete().where(pending))
                await conn.execute(
                    step_up.insert().values(user_id=user, seed=sealed, enrolled_at=self.clock())
                )
        except IntegrityError:  # enrolled already (perhaps a moment ago, on another replica)
            return None
        # The Key URI Format of Google Authenticator, which every authenticator app reads:
        # https://github.com/google/google-authenticator/wiki/Key-Uri-Format
        uri = pyotp.TOTP(seed).provisioning_uri(name=user, issuer_name=ISSUER)
        png = io.BytesIO()
        # Error correction M (15% of the symbol may be lost), and segno's default border, the
        # four-module quiet zone ISO/IEC 18004 asks for.
        segno.make(uri, error="m").save(png, kind="png", scale=6)
        return NewSeed(uri=uri, seed=seed, qr_png=png.getvalue())

    async def confirm(self, user: str, code: str) -> Check:
        """The first valid code of a new enrolment makes it count."""
        return await self._check(user, code, PENDING)

    async def reset(self, user: str) -> bool:
        """Forget `user`'s enrolment (an admin's); False when there was none."""
        async with self.engine.begin() as conn:
            gone = await conn.execute(step_up.delete().where(step_up.c.user_id == user))
        return bool(gone.rowcount)

    # --- codes -----------------------------------------------------------------------------

    async def verify(self, user: str, code: str) -> Check:
        """An enrolled person's code, now."""
        return await self._check(user, code, CONFIRMED)

    async def _check(self, user: str, code: str, state: sa.ColumnElement[bool]) -> Check:
        """A code of `user`'s enrolment in `state`. Whether step-up is locked is decided by the
        UPDATE that counts the code, never by an earlier read: another replica may lock (or an
        admin reset) between the two."""
        keyring = self._keyring()
        now = self.clock()
        typed = "".join(code.split())
        register_secret(typed)
        mine = sa.and_(step_up.c.user_id == user, state)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(step_up).where(mine))).first()
        if row is None:
            return Check(Verdict.NOT_ENROLLED)
        seed = keyring.open(row.seed, user)
        register_secret(seed)
        step = _matching_step(seed, typed, now)
        unlocked = sa.or_(step_up.c.locked_until.is_(None), step_up.c.locked_until <= now)
        async with self.engine.begin() as conn:
            if step is None:
                return await self._failed(conn, sa.and_(mine, unlocked), user, now)
            fresh = sa.or_(step_up.c.last_step.is_(None), step_up.c.last_step < step)
            accept = (
                step_up.update()
                .where(mine, unlocked, fresh)
                .values(
                    last_step=step,
                    failures=0,
                    confirmed_at=sa.func.coalesce(step_up.c.confirmed_at, now),
                )
            )
            if (await conn.execute(accept)).rowcount == 1:
                return Check(Verdict.OK)
            after = await _state(conn, user)
        if after is not None and _locked(after.locked_until, now):
            return Check(Verdict.LOCKED, 0, after.locked_until)
        return Check(Verdict.REPLAYED if after is not None else Verdict.NOT_ENROLLED)

    async def _failed(
        self, conn: AsyncConnection, mine: sa.ColumnElement[bool], user: str, now: datetime
    ) -> Check:
        """One more wrong code in a row; the one that reaches `tries` locks step-up (and starts
        the count again for after the lock)."""
        reached = step_up.c.failures + 1 >= self.tries
        count = (
            step_up.update()
            .where(mine)
            .values(
                failures=sa.case((reached, 0), else_=step_up.c.failures + 1),
                locked_until=sa.case((reached, now + self.lock), else_=step_up.c.locked_until),
            )
        )
        counted = (await conn.execute(count)).rowcount
        after = await _state(conn, user)
        if after is None:
            return Check(Verdict.NOT_ENROLLED)
        if _locked(after.locked_until, now):
            return Check(Verdict.WRONG if counted else Verdict.LOCKED, 0, after.locked_until)
        return Check(Verdict.WRONG, self.tries - int(after.failures))

    # --- keys ------------------------------------------------------------------------------

    async def rotate(self) -> int:
        """Every seed sealed again under the current key, in one transaction (all or none);
        Unreadable names the first row no key opens."""
        keyring = self._keyring()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(sa.select(step_up.c.user_id, step_up.c.seed))).all()
            for user, sealed in rows:
                try:
                    resealed = keyring.reseal(sealed, user)
                except Unreadable:
                    raise Unreadable(f"the seed of {user} opens with neither key") from None
                await conn.execute(
                    step_up.update().where(step_up.c.user_id == user).values(seed=resealed)
                )
        return len(rows)

    async def readable(self) -> bool | None:
        """Whether the configured keys open every stored seed; None when none is stored."""
        keyring = self._keyring()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(step_up.c.user_id, step_up.c.seed))).all()
        for user, sealed in rows:
            try:
                register_secret(keyring.open(sealed, user))
            except Unreadable:
                return False
        return True if rows else None

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            raise NoKey("BILLING_SECRET_KEY is not set")
        return self.keyring


def _matching_step(seed: str, code: str, now: datetime) -> int | None:
    """The RFC 6238 time-step whose code `code` is, within the drift; None when none is.
    pyotp compares each candidate in constant time (`pyotp.utils.strings_equal`, that is
    `hmac.compare_digest`)."""
    try:
        return pyotp.TOTP(seed).verify_and_get_timecode(code, for_time=now, valid_window=DRIFT)
    except OTPVerificationError:
        return None


def _locked(until: datetime | None, now: datetime) -> bool:
    return until is not None and until > now


async def _state(conn: AsyncConnection, user: str) -> Any:
    query = sa.select(step_up.c.failures, step_up.c.locked_until).where(step_up.c.user_id == user)
    return (await conn.execute(query)).first()
