"""Provider limits that must hold for every process using one account, not just this one.

SMSC takes one document request a minute per login (`commands/smsc/queue.py`); VoIPcloud
grants a request budget per token (`commands/voipcloud/budget.py`). Each client keeps its limit
in this process; when several replicas share an account, the bot lends the limit a
`SharedLimits` (implemented in `bot/storage/limits.py` over PostgreSQL) through `Limit.share`,
and the limit then coordinates through it as well.

Limits are keyed by `limit_key(provider, account)`: a digest of the login or token, never the
value itself, so keys may be stored, logged and shown.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

LimitKind = Literal["queue", "budget"]


def limit_key(provider: str, account: str) -> str:
    """`provider:` and 16 hex digits of SHA-256 over the account's login or token."""
    digest = hashlib.sha256(f"{provider.lower()}\x00{account}".encode()).hexdigest()
    return f"{provider.lower()}:{digest[:16]}"


class SharedLimits(Protocol):
    """What the bot lends a limit so that replicas share it."""

    def turn(self, key: str, spacing: float) -> AbstractAsyncContextManager[None]:
        """Enter when no other process holds `key`'s turn and at least `spacing` seconds have
        passed since the previous turn (of any process) ended; leave when the request is done."""
        ...

    async def take(
        self, key: str, *, requests: int, window: timedelta, now: datetime
    ) -> tuple[bool, list[datetime]]:
        """Take a slot in `key`'s sliding window if fewer than `requests` were taken in the
        `window` before `now`. Returns whether it was taken and the window's slots after it,
        oldest first."""
        ...

    async def slots(self, key: str, *, window: timedelta, now: datetime) -> list[datetime]:
        """The slots taken in the `window` before `now`, oldest first."""
        ...


@runtime_checkable
class Limit(Protocol):
    """A provider limit a client holds: a queue of requests or a request budget."""

    kind: LimitKind
    key: str

    def level(self) -> int | None:
        """Queue: requests waiting or running here. Budget: requests that may go now (None:
        unlimited)."""
        ...

    async def refresh(self) -> None:
        """Bring `level` up to date with the other replicas (nothing to do when unshared)."""
        ...

    def share(self, shared: SharedLimits) -> None:
        """From now on, hold the limit together with every process using `shared`."""
        ...


def limits_of(client: object) -> list[Limit]:
    """The limits a provider client holds (its attributes that are `Limit`s)."""
    values: Iterable[object] = vars(client).values() if hasattr(client, "__dict__") else ()
    return [value for value in values if isinstance(value, Limit)]
