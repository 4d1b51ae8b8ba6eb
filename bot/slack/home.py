"""The App Home tab: what the viewing user can act on, what is scheduled, what they ran.

`home_view` is a pure builder (tested without Slack); `bot.slack.listeners.HomeOpened` gathers
its inputs and publishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

from bot.approvals.state import Approval
from bot.messages import when
from bot.schedules.store import Schedule
from bot.slack.blocks import ACTION_PREFIX
from commands.base import Role
from commands.secrets import redact

MAX_HOME_BLOCKS = 100
SHOWN = 10


def _text(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": redact(text)[:2900]}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150]}}


def home_view(
    *,
    user: str,
    role: Role | None,
    approvals: Sequence[Approval],
    schedules: Sequence[Schedule],
    recent: Sequence[dict[str, Any]],
    tz: ZoneInfo,
    unknown: Sequence[Approval] = (),
) -> dict[str, Any]:
    """A Home tab view within Block Kit's limits (100 blocks, 3000 chars a section)."""
    blocks: list[dict[str, Any]] = [
        _header("billing-bot"),
        _text(
            f"You are *{role.label if role else 'without a billing role'}*. "
            "Type `/billing help` in any channel to see what you can run."
        ),
        {"type": "divider"},
    ]
    can_approve = role is not None and role >= Role.APPROVER
    actionable = [a for a in approvals if can_approve and a.requester != user]
    blocks.append(_header(f"Approvals you can act on ({len(actionable)})"))
    if not actionable:
        blocks.append(_text("_Nothing waiting for you._"))
    for approval in actionable[:SHOWN]:
        blocks.append(
            _text(
                f"*#{approval.id}* `{approval.command_line}`\nrequested by "
                f"<@{approval.requester}> · expires {when(approval.expires_at, tz)}"
                if approval.requester.startswith(("U", "W"))
                else f"*#{approval.id}* `{approval.command_line}`\nfrom {approval.requester} · "
                f"expires {when(approval.expires_at, tz)}"
            )
        )
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button(
                        approval.approve_label, f"/billing approve {approval.id}", 0, "primary"
                    ),
                    _button(
                        approval.reject_label,
                        f"/billing reject {approval.id} form=yes",
                        1,
                        "danger",
                    ),
                ],
            }
        )
    if len(actionable) > SHOWN:
        blocks.append(_text(f"…and {len(actionable) - SHOWN} more: `/billing approvals`."))
    if unknown:
        blocks += [{"type": "divider"}, _header(f"Unknown outcomes to settle ({len(unknown)})")]
    for approval in unknown[:SHOWN]:
        blocks.append(
            _text(
                f"❓ *#{approval.id}* `{approval.command_line}` — outcome unknown since "
                f"{when(approval.decided_at, tz)}; settle it with "
                f'`/billing resolve {approval.id} done|not-done reason="…"`'
            )
        )
        if can_approve:
            check = _button("Check now", f"/billing check-outcome {approval.id}", 0, "primary")
            blocks.append({"type": "actions", "elements": [check]})
    if len(unknown) > SHOWN:
        blocks.append(_text(f"…and {len(unknown) - SHOWN} more: `/billing approvals`."))
    blocks += [{"type": "divider"}, _header(f"Schedules ({len(schedules)})")]
    if not schedules:
        blocks.append(_text("_No schedules._"))
    for schedule in schedules[:SHOWN]:
        state = "paused" if schedule.paused else f"next {when(schedule.next_run_at, tz)}"
        blocks.append(_text(f"*#{schedule.id}* {schedule.kind} `{schedule.cron}` — {state}"))
    if len(schedules) > SHOWN:
        blocks.append(_text(f"…and {len(schedules) - SHOWN} more: `/billing schedules`."))
    blocks += [{"type": "divider"}, _header("Your recent commands")]
    if not recent:
        blocks.append(_text("_None yet._"))
    for row in recent[:SHOWN]:
        blocks.append(
            _text(f"{when(row['at'], tz)} `{row['command']}` — {row['decision']}, {row['outcome']}")
        )
    return {"type": "home", "blocks": blocks[:MAX_HOME_BLOCKS]}


def _button(label: str, command: str, index: int, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label[:75]},
        "action_id": f"{ACTION_PREFIX}home:{index}",
        "value": command,
        "style": style,
    }
