"""Who may do what: cumulative roles from user IDs and user-group membership.

`BILLING_VIEWERS`, `…_OPERATORS`, `…_APPROVERS`, `…_ADMINS` list user IDs (U…/W…) and user-group
IDs (S…). Group members are looked up through `usergroups.users.list` and cached briefly. A role
nobody is configured for is held by nobody. The console with no roles configured at all is the
one exception: everyone there is admin (`open_console=True`).

`Roles.check` is the one role check: typed commands, clicks, forms, approvals and the runs of
schedules all ask it, and a refusal says which role is missing and which variable grants it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.config import Settings
from commands.base import Role

log = logging.getLogger(__name__)

GroupLookup = Callable[[str], Awaitable[Sequence[str]]]
CACHE_SECONDS = 300.0


class Roles:
    def __init__(
        self,
        settings: Settings,
        *,
        group_members: GroupLookup | None = None,
        open_console: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grants: dict[Role, tuple[str, ...]] = {
            Role.VIEWER: settings.billing_viewers,
            Role.OPERATOR: settings.billing_operators,
            Role.APPROVER: settings.billing_approvers,
            Role.ADMIN: settings.billing_admins,
        }
        self.group_members = group_members
        self.open_console = open_console and not settings.roles_configured
        self.clock = clock
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = asyncio.Lock()

    async def check(self, user_id: str, needed: Role) -> Denied | None:
        """None when `user_id` holds `needed` (or a higher role); else what they hold."""
        held = await self.role_of(user_id)
        if held is not None and held >= needed:
            return None
        return Denied(needed=needed, held=held)

    async def role_of(self, user_id: str) -> Role | None:
        """The highest role the user holds, or None."""
        if self.open_console:
            return Role.ADMIN
        for role in sorted(self.grants, reverse=True):
            for grantee in self.grants[role]:
                if grantee == user_id:
                    return role
                if grantee.startswith("S") and user_id in await self._members(grantee):
                    return role
        return None

    async def holders(self, role: Role) -> list[str]:
        """Everyone who holds `role` or a higher one by being listed: the user IDs of those
        roles' variables and the members of their user groups, the role asked for first, each
        person once. Nobody is listed in the open console (everyone there is admin).

        Raises `LookupError` when a group's members cannot be listed and none are cached: a
        list that leaves people out would tell only some of them."""
        if self.open_console:
            return []
        found: dict[str, None] = {}
        for granted in sorted(r for r in self.grants if r >= role):
            for grantee in self.grants[granted]:
                if not grantee.startswith("S"):
                    found[grantee] = None
                    continue
                for member in sorted(await self._members(grantee, strict=True)):
                    found[member] = None
        return list(found)

    async def _members(self, group: str, *, strict: bool = False) -> frozenset[str]:
        now = self.clock()
        cached = self._cache.get(group)
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        if self.group_members is None:
            return frozenset()
        async with self._lock:
            try:
                members = frozenset(await self.group_members(group))
            except Exception as exc:  # a failed lookup grants nothing, and is retried soon
                log.warning("could not list members of user group %s: %s", group, exc)
                if strict and not cached:
                    raise LookupError(f"the members of user group {group} are unknown") from exc
                return cached[1] if cached else frozenset()
            self._cache[group] = (now, members)
            return members


@dataclass(frozen=True)
class Denied:
    """A role check that failed: the role needed and the one held (None: no billing role)."""

    needed: Role
    held: Role | None

    def sentence(self, what: str) -> str:
        """What the person reads: the role `what` needs, theirs, and how to be granted it."""
        return refusal(self.needed, self.held, what)


def refusal(needed: Role, held: Role | None, command: str) -> str:
    grant = " or ".join(r.variable for r in Role if r >= needed)
    have = f"you are {held.label}" if held else "you have no billing role"
    return (
        f"`{command}` needs the *{needed.label}* role and {have}. "
        f"An admin can add your user ID (or a user group you are in) to {grant}."
    )
