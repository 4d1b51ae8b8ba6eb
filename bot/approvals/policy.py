"""Approval policies: who must approve what, and how much may move, from a small file.

    rules:                                   # BILLING_POLICY_FILE, YAML (.yml/.yaml) or TOML
      - name: big-move-needs-admin
        command: voipcloud move-funds        # a declared command that needs approval
        when: [{field: amount, over: 500}]   # all conditions hold (amounts compare by size)
        approver_role: admin
      - name: huge-move-needs-two
        command: voipcloud move-funds
        when: [{field: amount, over: 5000}]
        approvals: 2
      - name: customer-daily-ceiling
        command: voipcloud move-funds
        ceiling: {field: amount, max: 20000, per: day, by: account}
      - name: big-move-needs-code-and-why
        command: voipcloud move-funds
        when: [{field: amount, over: 1000}]
        step_up: totp                        # the approver's authenticator code
        reason: required                     # and why they approve

Every rule that matches a request applies: the most approvals any asks for, the highest
approver role, every ceiling, and a code or a reason when any asks for one (every approval of
the request then brings them). A ceiling sums the sizes of the runs of the same command
(per value of `by`, when given) that are executing, done or unknown since the period began in
BILLING_TIMEZONE; it is checked when the request is made and again by the final approval,
inside the claim's transaction, so two requests cannot both use the last room. No file means
one approval by any approver, as before.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.approvals.state import Approval, Status
from bot.storage.store import approvals
from commands import money
from commands.base import Args, Command, Role

SPENDING = (Status.EXECUTING.value, Status.DONE.value, Status.UNKNOWN.value)


class PolicyError(Exception):
    """A policy file that cannot be used; the message names the file and the bad rule."""


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    field: str
    over: Decimal | None = None
    at_least: Decimal | None = None
    under: Decimal | None = None
    in_: list[str] | None = Field(None, alias="in")

    def holds(self, values: dict[str, str]) -> bool:
        raw = values.get(self.field)
        if raw is None:
            return False
        if self.in_ is not None:
            items = [item.strip() for item in raw.split(",")]
            if not any(item in self.in_ for item in items):
                return False
        if self.over is None and self.at_least is None and self.under is None:
            return True
        size = _size(raw)
        if size is None:
            return False
        return (
            (self.over is None or size > self.over)
            and (self.at_least is None or size >= self.at_least)
            and (self.under is None or size < self.under)
        )

    def __str__(self) -> str:
        parts = []
        if self.over is not None:
            parts.append(f"{self.field} over {money.exact(self.over)}")
        if self.at_least is not None:
            parts.append(f"{self.field} at least {money.exact(self.at_least)}")
        if self.under is not None:
            parts.append(f"{self.field} under {money.exact(self.under)}")
        if self.in_ is not None:
            parts.append(f"{self.field} in {', '.join(self.in_)}")
        return " and ".join(parts) or f"{self.field} given"


class Ceiling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    max: Decimal = Field(gt=0)
    per: Literal["day", "week", "month"]
    by: str | None = None

    def since(self, now: datetime, tz: ZoneInfo) -> datetime:
        local = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        if self.per == "week":
            local -= timedelta(days=local.weekday())
        elif self.per == "month":
            local = local.replace(day=1)
        return local

    def __str__(self) -> str:
        scope = f" to one {self.by}" if self.by else ""
        return f"at most {money.exact(self.max)} of {self.field} a {self.per}{scope}"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    command: str
    when: list[Condition] = Field(default_factory=list)
    approvals: int = Field(1, ge=1, le=5)
    approver_role: Literal["approver", "admin"] = "approver"
    ceiling: Ceiling | None = None
    step_up: Literal["totp"] | None = None
    reason: Literal["required"] | None = None

    @field_validator("command")
    @classmethod
    def _path(cls, value: str) -> str:
        return " ".join(value.strip().removeprefix("/").split())

    def matches(self, path: str, values: dict[str, str]) -> bool:
        return path == self.command and all(c.holds(values) for c in self.when)

    def describe(self) -> str:
        parts = []
        if self.approvals > 1:
            parts.append(f"{self.approvals} approvals")
        if self.approver_role == "admin":
            parts.append("an admin's approval")
        if self.ceiling:
            parts.append(str(self.ceiling))
        if self.step_up:
            parts.append("the approver's authenticator code")
        if self.reason:
            parts.append("a reason")
        when = " when " + " and ".join(str(c) for c in self.when) if self.when else ""
        return f"*{self.name}*: `/{self.command}`{when} needs " + ", ".join(parts or ["approval"])


@dataclass(frozen=True)
class Requirement:
    """What the matching rules ask of one request."""

    approvals: int = 1
    role: Role = Role.APPROVER
    rules: tuple[Rule, ...] = ()

    @property
    def names(self) -> str | None:
        return ", ".join(r.name for r in self.rules) or None

    @property
    def ceilings(self) -> list[Rule]:
        return [r for r in self.rules if r.ceiling is not None]

    @property
    def step_up(self) -> bool:
        """Approving needs the approver's current authenticator code."""
        return any(r.step_up for r in self.rules)

    @property
    def reason(self) -> bool:
        """Approving needs the approver's reason."""
        return any(r.reason for r in self.rules)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)

    def requirement(self, command: Command[Any, Any], args: Args) -> Requirement:
        values = args.preview()
        found = tuple(r for r in self.rules if r.matches(command.path, values))
        if not found:
            return Requirement()
        role = Role.ADMIN if any(r.approver_role == "admin" for r in found) else Role.APPROVER
        return Requirement(approvals=max(r.approvals for r in found), role=role, rules=found)

    def lines(self) -> list[str]:
        return [f"• {rule.describe()}" for rule in self.rules]

    @property
    def step_up(self) -> bool:
        """Some rule asks for an authenticator code (so BILLING_SECRET_KEY is needed)."""
        return any(r.step_up for r in self.rules)


def load(path: Path, commands: Sequence[Command[Any, Any]]) -> Policy:
    """Read and check a policy file against the declared commands; PolicyError names the
    first bad rule in one line."""
    where = f"BILLING_POLICY_FILE ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        kind = path.suffix.lstrip(".").upper() or "YAML"
        raise PolicyError(f"{where}: is not valid {kind}: {first}") from None
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = list(error["loc"])
        which = ""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            index = loc[1]
            rules = data.get("rules") if isinstance(data, dict) else None
            name = (
                rules[index].get("name")
                if isinstance(rules, list) and isinstance(rules[index], dict)
                else None
            )
            which = f"rule {index + 1}" + (f" ({name})" if name else "") + ": "
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        raise PolicyError(f"{where}: {which}{field + ' ' if field else ''}{error['msg']}") from None
    by_path = {c.path: c for c in commands}
    for index, rule in enumerate(policy.rules, start=1):
        label = f"{where}: rule {index} ({rule.name})"
        command = by_path.get(rule.command)
        if command is None:
            guess = difflib.get_close_matches(rule.command, list(by_path), n=1)
            hint = f"; did you mean `{guess[0]}`?" if guess else ""
            raise PolicyError(f"{label}: `/{rule.command}` is not a command{hint}")
        if not command.approval:
            raise PolicyError(
                f"{label}: `/{rule.command}` runs without approval; rules apply to commands "
                "that need one"
            )
        fields = set(command.args.model_fields)
        named = [c.field for c in rule.when]
        if rule.ceiling:
            named += [rule.ceiling.field, *([rule.ceiling.by] if rule.ceiling.by else [])]
        for field in named:
            if field not in fields:
                raise PolicyError(
                    f"{label}: `/{rule.command}` has no argument `{field}` "
                    f"(it has {', '.join(sorted(fields))})"
                )
    return policy


async def spent(
    conn: AsyncConnection,
    rule: Rule,
    *,
    key: str | None,
    since: datetime,
) -> Decimal:
    """What the ceiling's runs have used since `since`: sizes of `field`, per `by` value."""
    assert rule.ceiling is not None
    query = sa.select(approvals.c.args).where(
        approvals.c.command_path == rule.command,
        approvals.c.status.in_(SPENDING),
        approvals.c.decided_at >= since,
    )
    total = Decimal(0)
    for stored in (await conn.execute(query)).scalars():
        values = json.loads(stored or "{}")
        if rule.ceiling.by and values.get(rule.ceiling.by) != key:
            continue
        total += _size(values.get(rule.ceiling.field, "")) or Decimal(0)
    return total


async def over_ceiling(
    conn: AsyncConnection,
    requirement: Requirement,
    values: dict[str, str],
    *,
    now: datetime,
    tz: ZoneInfo,
) -> str | None:
    """The sentence refusing a request that would pass a ceiling, or None."""
    for rule in requirement.ceilings:
        ceiling = rule.ceiling
        assert ceiling is not None
        key = values.get(ceiling.by) if ceiling.by else None
        amount = _size(values.get(ceiling.field, "")) or Decimal(0)
        used = await spent(conn, rule, key=key, since=ceiling.since(now, tz))
        if used + amount > ceiling.max:
            scope = f" for {ceiling.by} {key}" if key else ""
            room = max(Decimal(0), ceiling.max - used)
            return (
                f"rule {rule.name} allows {ceiling}; {money.exact(used)} is already used this "
                f"{ceiling.per}{scope}, so {money.exact(amount)} does not fit "
                f"({money.exact(room)} left)"
            )
    return None


def requirement_of(policy: Policy, command: Command[Any, Any], args: Args) -> Requirement:
    """What a request for `command` with `args` needs (no policy file: the empty `Policy()`,
    one approval by any approver but the requester)."""
    return policy.requirement(command, args)


def rules_of(row: Approval, policy: Policy) -> Requirement:
    """The rules a stored request was made under (by name, from the policy in force)."""
    if not row.rules:
        role = Role.ADMIN if row.approver_role == "admin" else Role.APPROVER
        return Requirement(approvals=row.approvals_needed, role=role)
    names = {n.strip() for n in row.rules.split(",")}
    found = tuple(r for r in policy.rules if r.name in names)
    role = Role.ADMIN if row.approver_role == "admin" else Role.APPROVER
    return Requirement(approvals=row.approvals_needed, role=role, rules=found)


def _size(raw: str) -> Decimal | None:
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        return None
    return abs(value) if value.is_finite() else None
