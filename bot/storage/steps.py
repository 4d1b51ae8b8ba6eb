"""Workflow Builder step runs in the database (the `step_runs` table; bot/steps.py uses it).

A run is written when its `function_execution_id` first arrives (a second delivery of the same
event finds it and does nothing), linked to the approval it asked for, given what the approved
run produced, and marked `queued_at` by the one transaction that hands its completion to the
outbox: whatever decides an approval (a click, the sweep after a restart, two replicas at
once), its step completes once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.store import step_runs, utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class StepRun:
    function_execution_id: str
    workflow_execution_id: str
    callback_id: str
    requested_by: str
    approval_id: int | None
    outputs: dict[str, str]
    file: bytes | None
    file_name: str | None
    queued: bool
    result: str | None
    permalink: str | None


def _run(row: Any) -> StepRun:
    return StepRun(
        function_execution_id=row["function_execution_id"],
        workflow_execution_id=row["workflow_execution_id"],
        callback_id=row["callback_id"],
        requested_by=row["requested_by"],
        approval_id=row["approval_id"],
        outputs=json.loads(row["outputs"] or "{}"),
        file=row["file"],
        file_name=row["file_name"],
        queued=row["queued_at"] is not None,
        result=row["result"],
        permalink=row["permalink"],
    )


class StepRuns:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def start(self, execution: str, workflow: str, callback_id: str, user: str) -> bool:
        """A new run; False when this execution was seen already (Slack delivered it again)."""
        values = {
            "function_execution_id": execution,
            "workflow_execution_id": workflow,
            "callback_id": callback_id,
            "requested_by": user,
            "started_at": self.clock(),
        }
        try:
            async with self.engine.begin() as conn:
                await conn.execute(step_runs.insert().values(**values))
        except IntegrityError:
            return False
        return True

    async def get(self, execution: str) -> StepRun | None:
        return await self._one(step_runs.c.function_execution_id == execution)

    async def of_approval(self, approval_id: int) -> StepRun | None:
        return await self._one(step_runs.c.approval_id == approval_id)

    async def _one(self, where: Any) -> StepRun | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(step_runs).where(where))).mappings().first()
        return _run(row) if row is not None else None

    async def link(self, execution: str, approval_id: int) -> None:
        await self._set(execution, approval_id=approval_id)

    async def keep(
        self, approval_id: int, outputs: dict[str, str], file: tuple[str, bytes] | None
    ) -> None:
        """What an approved run produced, kept until its completion is queued."""
        async with self.engine.begin() as conn:
            await conn.execute(
                step_runs.update()
                .where(step_runs.c.approval_id == approval_id)
                .values(
                    outputs=json.dumps(outputs, ensure_ascii=False),
                    file=file[1] if file else None,
                    file_name=file[0] if file else None,
                )
            )

    async def queue_once(
        self, execution: str, queue: Callable[[AsyncConnection], Awaitable[T]]
    ) -> tuple[bool, T | None]:
        """Mark the run's completion queued and queue it (`queue`, in the same transaction):
        (True, what `queue` returned) for the one caller that did; (False, None) for any other."""
        mark = (
            step_runs.update()
            .where(step_runs.c.function_execution_id == execution, step_runs.c.queued_at.is_(None))
            .values(queued_at=self.clock(), file=None)
        )
        async with self.engine.begin() as conn:
            if (await conn.execute(mark)).rowcount != 1:
                return False, None
            return True, await queue(conn)

    async def waiting(self) -> list[int]:
        """Approvals whose step's completion is not queued yet (the sweep decides which ended)."""
        query = sa.select(step_runs.c.approval_id).where(
            step_runs.c.approval_id.is_not(None), step_runs.c.queued_at.is_(None)
        )
        async with self.engine.connect() as conn:
            return [int(i) for i in (await conn.execute(query)).scalars()]

    async def finished(self, execution: str, result: str) -> None:
        """How Slack took the completion: `completed`, `failed`, or `not running`."""
        await self._set(execution, result=result, finished_at=self.clock())

    async def remember_link(self, execution: str, permalink: str) -> None:
        await self._set(execution, permalink=permalink)

    async def _set(self, execution: str, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                step_runs.update()
                .where(step_runs.c.function_execution_id == execution)
                .values(**values)
            )
