"""The App Home builder: what the viewer can act on, within Block Kit's limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.approvals.state import Approval, Status
from bot.schedules.store import Schedule
from bot.slack.home import MAX_HOME_BLOCKS, home_view
from commands.base import Role

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def approval(n: int, requester: str) -> Approval:
    return Approval(
        id=n,
        command_line=f"/voipcloud move-funds 100{n} 5.00 top-up",
        command_path="voipcloud move-funds",
        provider="voipcloud",
        args={},
        description="",
        requester=requester,
        origin="user",
        channel="C1",
        message_ts=None,
        status=Status.PENDING,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        decided_by=None,
        decided_at=None,
        reason=None,
        outcome=None,
        runner=None,
        heartbeat_at=None,
        approve_label="Approve",
        reject_label="Reject",
        snooze_hours=None,
    )


def schedule(n: int) -> Schedule:
    return Schedule(
        id=n,
        kind="closing-reminder",
        cron="0 9 1 * *",
        args={},
        channel="C1",
        created_by="U0ADMIN",
        paused=n % 2 == 0,
        next_run_at=NOW + timedelta(days=10),
        last_run_at=None,
    )


def buttons(view: dict[str, Any]) -> list[str]:
    return [e["value"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_approver_sees_others_requests_with_buttons_but_not_their_own() -> None:
    view = home_view(
        user="U2",
        role=Role.APPROVER,
        approvals=[approval(1, "U1"), approval(2, "U2"), approval(3, "schedule:4")],
        schedules=[schedule(1)],
        recent=[{"at": NOW, "command": "/billing approvals", "decision": "ran", "outcome": "done"}],
        tz=ZoneInfo("Europe/Lisbon"),
    )
    assert buttons(view) == [
        "/billing approve 1",
        "/billing reject 1 form=yes",
        "/billing approve 3",
        "/billing reject 3 form=yes",
    ]
    text = json.dumps(view, ensure_ascii=False)
    assert "Approvals you can act on (2)" in text
    assert "from schedule:4" in text
    assert "`/billing approvals` — ran, done" in text


def test_viewer_has_nothing_to_act_on() -> None:
    view = home_view(
        user="U0VIEWER",
        role=Role.VIEWER,
        approvals=[approval(1, "U1")],
        schedules=[],
        recent=[],
        tz=ZoneInfo("UTC"),
    )
    assert buttons(view) == []
    assert "Nothing waiting for you" in json.dumps(view, ensure_ascii=False)


def test_large_lists_stay_within_block_kit_limits() -> None:
    view = home_view(
        user="U2",
        role=Role.ADMIN,
        approvals=[approval(n, "U1") for n in range(1, 80)],
        schedules=[schedule(n) for n in range(1, 40)],
        recent=[
            {"at": NOW, "command": "/smsc act get acme 7", "decision": "ran", "outcome": "done"}
        ]
        * 50,
        tz=ZoneInfo("UTC"),
    )
    assert view["type"] == "home"
    assert len(view["blocks"]) <= MAX_HOME_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])
    text = json.dumps(view, ensure_ascii=False)
    assert "and 69 more: `/billing approvals`" in text
    assert "and 29 more: `/billing schedules`" in text
