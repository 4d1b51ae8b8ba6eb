"""The `/billing` commands' client: the few services they work with, and the surface of the
request that runs one.

The composition root makes one for each `/billing` request, bound to that request's surface, as
the executor hands a provider's handler that provider's client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.anchors import Anchoring
from bot.approvals.flow import ApprovalFlow
from bot.approvals.policy import Policy
from bot.approvals.state import Approvals
from bot.approvals.stepup import StepUp
from bot.catalog import Catalog
from bot.config import Settings
from bot.roles import Roles
from bot.schedules.engine import Scheduler
from bot.schedules.store import ScheduleStore
from bot.storage.audit import AuditLog
from bot.surface import Surface
from commands.base import Reply


class SecretMessages(Protocol):
    async def send(self, user: str, reply: Reply) -> bool:
        """To `user`'s direct messages and nowhere else, kept nowhere on the way (no outbox
        row): what must not rest in the database, such as an enrolment's seed. False when it
        could not be sent (the caller says so)."""
        ...


class DirectMessages(Protocol):
    async def open(self, user: str) -> Surface | None:
        """Where something for `user` alone goes, files included (None: it could not be
        opened; the caller says so)."""
        ...


@dataclass(frozen=True, kw_only=True)
class Desk:
    settings: Settings
    catalog: Catalog
    engine: AsyncEngine
    approvals: Approvals
    flow: ApprovalFlow
    audit: AuditLog
    anchors: Anchoring
    policy: Policy
    schedules: ScheduleStore
    scheduler: Scheduler
    roles: Roles
    direct: DirectMessages
    secrets: SecretMessages
    stepup: StepUp
    surface: Surface
