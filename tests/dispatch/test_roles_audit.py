"""Roles from IDs and user groups; the audit log and its CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from bot.config import Settings
from bot.roles import Roles
from bot.runtime import Runtime
from commands.base import Role
from tests.support import RecordingSurface


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_roles_from_ids_and_groups_with_a_short_cache() -> None:
    lookups: list[str] = []
    members = {"S0FINANCE": ["U7", "U8"], "S0LEADS": ["U8"]}

    async def group_members(group: str) -> Sequence[str]:
        lookups.append(group)
        return members[group]

    clock = Clock()
    roles = Roles(
        Settings(
            billing_viewers="S0FINANCE",
            billing_approvers="S0LEADS,U9",
            billing_admins="U1",
        ),
        group_members=group_members,
        clock=clock,
    )
    assert await roles.role_of("U1") is Role.ADMIN
    assert await roles.role_of("U9") is Role.APPROVER
    assert await roles.role_of("U8") is Role.APPROVER  # the highest of their groups
    assert await roles.role_of("U7") is Role.VIEWER
    assert await roles.role_of("U6") is None
    calls = len(lookups)
    assert await roles.role_of("U7") is Role.VIEWER
    assert len(lookups) == calls  # cached
    members["S0FINANCE"] = []
    clock.now += 301
    assert await roles.role_of("U7") is None  # membership changes are seen after the cache


async def test_nobody_is_operator_when_none_is_configured_except_open_console() -> None:
    settings = Settings(billing_viewers="U1")
    assert await Roles(settings).role_of("U2") is None
    assert await Roles(settings, open_console=True).role_of("U2") is None  # roles exist
    assert await Roles(Settings(), open_console=True).role_of("U2") is Role.ADMIN
    assert await Roles(Settings()).role_of("U2") is None  # serve/socket: nobody


async def test_a_failed_group_lookup_grants_nothing() -> None:
    async def broken(group: str) -> Sequence[str]:
        raise RuntimeError("slack down")

    roles = Roles(Settings(billing_operators="S0OPS"), group_members=broken)
    assert await roles.role_of("U1") is None


async def test_audit_filters_and_export(runtime: Runtime) -> None:
    await runtime.dispatcher.run(
        "/invoicexpress sequences", user="U1", channel="C1", surface=RecordingSurface()
    )
    await runtime.dispatcher.run(
        "/smsc act get acme num=7", user="U0VIEWER", channel="C2", surface=RecordingSurface()
    )
    await runtime.dispatcher.run(
        "/smsc invoice create acme 0", user="U1", channel="C1", surface=RecordingSurface()
    )

    viewer = RecordingSurface(user="U0VIEWER")
    await runtime.dispatcher.run("/billing audit", user="U0VIEWER", channel="C1", surface=viewer)
    assert "needs the *approver* role" in viewer.privates[0]

    approver = RecordingSurface(user="U2")
    await runtime.dispatcher.run(
        "/billing audit 10 provider=smsc", user="U2", channel="C1", surface=approver
    )
    table = approver.sent[-1].table
    assert table is not None
    commands = [row[3] for row in table.rows]
    assert commands == ["/smsc invoice create", "/smsc act get"]
    assert approver.sent[-1].private
    await runtime.dispatcher.run(
        "/billing audit 5 user=U0VIEWER", user="U2", channel="C1", surface=approver
    )
    table = approver.sent[-1].table
    assert table is not None and {row[2] for row in table.rows} == {"U0VIEWER"}

    today = runtime.executor.clock().date().isoformat()
    await runtime.dispatcher.run(
        f"/billing audit export {today} {today}", user="U2", channel="C1", surface=approver
    )
    # The export goes to the requester alone, in a direct message; the channel sees nothing.
    assert approver.sent[-1].private and "direct message" in approver.sent[-1].text
    assert approver.sent[-1].files == ()
    direct = runtime.system_surface("U2")
    assert isinstance(direct, RecordingSurface)
    export = direct.sent[-1]
    assert export.files[0].filename == f"audit-{today}-{today}.csv"
    rows = list(csv.DictReader(io.StringIO(export.files[0].content.decode())))
    assert [r["command"] for r in rows][:3] == [
        "/invoicexpress sequences",
        "/smsc act get",
        "/smsc invoice create",
    ]
    assert rows[2]["decision"] == "invalid" and rows[2]["outcome"] == "rejected input"
    assert rows[1]["args"] == '{"num": "7", "user": "acme"}'

    await runtime.dispatcher.run(
        "/billing audit export 2026-10-31 2026-10-01", user="U2", channel="C1", surface=approver
    )
    assert "`end` (2026-10-01) is before `start` (2026-10-31)" in approver.privates[-1]
