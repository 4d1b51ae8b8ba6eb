"""What runs and what is audited never depends on showing it.

A surface that raises (Slack down, a broken terminal) can only lose what it would have shown;
the approval state, the provider call and the audit rows are the same as with one that works.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.runtime import Runtime
from bot.slack.failures import backoff, classify
from bot.storage.store import approvals, audit
from bot.surface import MessageRef
from commands.base import Reply
from tests.support import RecordingSurface, sandbox_of


class Broken(RecordingSurface):
    """Fails the chosen ways, after recording what it was asked to show."""

    def __init__(self, *failing: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failing = set(failing)

    async def send(self, reply: Reply, *, key: str | None = None) -> MessageRef | None:
        ref = await super().send(reply, key=key)
        if "send" in self.failing:
            raise RuntimeError("chat.postMessage answered 500")
        return ref

    async def private(self, text: str) -> None:
        await super().private(text)
        if "private" in self.failing:
            raise RuntimeError("response_url answered 404")

    async def update(self, ref: MessageRef | None, reply: Reply, *, key: str | None = None) -> None:
        await super().update(ref, reply, key=key)
        if "update" in self.failing:
            raise RuntimeError("chat.update answered 429")


async def rows(runtime: Runtime, table: sa.Table) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(table))).mappings()]


@pytest.mark.parametrize(
    "failing", [("send",), ("update",), ("private",), ("send", "update", "private")]
)
async def test_an_approved_move_runs_once_and_is_audited_whatever_the_surface_does(
    runtime: Runtime, failing: tuple[str, ...]
) -> None:
    sandbox = sandbox_of(runtime, "voipcloud")
    requester = RecordingSurface(user="U1")
    assert await runtime.dispatcher.run(
        "/voipcloud move-funds 10023 8.00 x", user="U1", channel="C1", surface=requester
    )
    approver = Broken(*failing, user="U2")
    await runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)

    assert len([r for r in sandbox.control.requests if r.method == "PUT"]) == 1
    [row] = await rows(runtime, approvals)
    assert row["status"] == "done"  # not executing, not unknown
    story = [(r["user_id"], r["decision"], r["outcome"]) for r in await rows(runtime, audit)]
    for step in [("U1", "requested", "pending"), ("U2", "approved", "executing")]:
        assert step in story
    assert ("U2", "executed", "done") in story
    # What it tried to show is what a working surface shows.
    assert any(r.text.startswith("Funds moved") for r in approver.sent)
    assert "*done*" in approver.updates[-1][1].text


async def test_a_failing_working_note_does_not_turn_a_result_into_unknown(
    runtime: Runtime,
) -> None:
    """The "⏳ Working…" note fails while the provider is slow; the answer still counts."""
    sandbox = sandbox_of(runtime, "voipcloud")
    runtime.executor.working_after = 0.0  # the note goes out at once
    requester = RecordingSurface(user="U1")
    await runtime.dispatcher.run(
        "/voipcloud move-funds 10023 8.00 x", user="U1", channel="C1", surface=requester
    )
    sandbox.control.hold()
    approver = Broken("private", user="U2")
    click = asyncio.ensure_future(
        runtime.dispatcher.run("/billing approve 1", user="U2", channel="C1", surface=approver)
    )
    await sandbox.control.wait_held()
    sandbox.control.release()
    await click

    [row] = await rows(runtime, approvals)
    assert row["status"] == "done"
    assert any("Working on" in text for text in approver.privates)
    assert any(r.text.startswith("Funds moved") for r in approver.sent)


async def test_a_read_is_audited_even_when_its_reply_cannot_be_shown(
    runtime: Runtime,
) -> None:
    surface = Broken("send", user="U0VIEWER")
    await runtime.dispatcher.run(
        "/voipcloud balance 10023", user="U0VIEWER", channel="C1", surface=surface
    )
    story = [(r["command"], r["decision"], r["outcome"]) for r in await rows(runtime, audit)]
    assert ("/voipcloud balance", "ran", "done") in story


def slack_error(status: int, data: Any, headers: dict[str, Any] | None = None) -> SlackApiError:
    response = AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.test/api/chat.postMessage",
        req_args={},
        data=data,
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("failed", response)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("error", "retry", "name", "after"),
    [
        (slack_error(429, {"ok": False}, {"Retry-After": "7"}), True, "ratelimited", 7.0),
        (slack_error(429, {}, {"retry-after": ["3"]}), True, "ratelimited", 3.0),
        (slack_error(500, "<html>Internal Server Error</html>"), True, "HTTP 500", None),
        (slack_error(503, {}), True, "HTTP 503", None),
        (slack_error(200, {"ok": False, "error": "internal_error"}), True, "internal_error", None),
        (slack_error(200, {"ok": False, "error": "invalid_blocks"}), False, "invalid_blocks", None),
        (slack_error(200, {"ok": False, "error": "not_in_channel"}), False, "not_in_channel", None),
        (TimeoutError(), True, "TimeoutError", None),
        (ConnectionResetError(), True, "ConnectionResetError", None),
    ],
)  # fmt: skip
def test_slack_failures_are_told_apart_even_when_the_answer_is_not_json(
    error: BaseException, retry: bool, name: str, after: float | None
) -> None:
    failure = classify(error)
    assert (failure.retry, failure.error, failure.retry_after) == (retry, name, after)


def test_backoff_honours_retry_after_and_doubles_up_to_five_minutes() -> None:
    assert backoff(1, 12.0) == 12.0
    assert [backoff(n, None) for n in (1, 2, 3, 4, 9, 10, 20)] == [1, 2, 4, 8, 256, 300, 300]
