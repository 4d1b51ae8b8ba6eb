"""Who holds a role: the people a request's notices go to (`Roles.holders`)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bot.config import Settings
from bot.roles import CACHE_SECONDS, Roles
from commands.base import Role


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


SETTINGS = Settings(
    billing_operators="U1,S0OPS",
    billing_approvers="U2,S0LEADS,U3",
    billing_admins="U0ADMIN,U3",
)


async def test_holders_are_the_role_and_the_roles_above_listed_users_and_group_members() -> None:
    members = {"S0LEADS": ["U9", "U2", "U8"], "S0OPS": ["U7"]}

    async def group_members(group: str) -> Sequence[str]:
        return members[group]

    roles = Roles(SETTINGS, group_members=group_members)
    # The role asked for first, then the higher ones; a group's members in order; each once.
    assert await roles.holders(Role.APPROVER) == ["U2", "U8", "U9", "U3", "U0ADMIN"]
    assert await roles.holders(Role.ADMIN) == ["U0ADMIN", "U3"]
    assert await roles.holders(Role.OPERATOR) == [
        "U1",
        "U7",
        "U2",
        "U8",
        "U9",
        "U3",
        "U0ADMIN",
    ]
    for user in await roles.holders(Role.APPROVER):  # the one role check agrees
        assert await roles.check(user, Role.APPROVER) is None


async def test_a_group_that_cannot_be_listed_fails_the_list_rather_than_shortening_it() -> None:
    clock = Clock()
    answers: list[Sequence[str] | Exception] = [["U9"], RuntimeError("slack down")]

    async def group_members(group: str) -> Sequence[str]:
        answer = answers.pop(0) if answers else RuntimeError("slack down")
        if isinstance(answer, Exception):
            raise answer
        return answer

    never_listed = Roles(SETTINGS, group_members=lambda group: _raise())
    with pytest.raises(LookupError, match="S0LEADS"):
        await never_listed.holders(Role.APPROVER)
    assert await never_listed.role_of("U9") is None  # a role check still grants nothing

    roles = Roles(SETTINGS, group_members=group_members, clock=clock)
    assert "U9" in await roles.holders(Role.APPROVER)
    clock.now += CACHE_SECONDS + 1  # the cache is stale and the lookup fails: the last list
    assert "U9" in await roles.holders(Role.APPROVER)


async def _raise() -> Sequence[str]:
    raise RuntimeError("usergroups.users.list answered 500")


async def test_nobody_is_listed_in_the_open_console_or_for_groups_without_slack() -> None:
    assert await Roles(Settings(), open_console=True).holders(Role.APPROVER) == []
    # Without Slack (no group lookup) only the listed users are known.
    assert await Roles(SETTINGS).holders(Role.APPROVER) == ["U2", "U3", "U0ADMIN"]
