"""Every sentence the bot says about itself, kept together (provider sentences live with them)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.approvals.state import Approval, Claim, Outcome, Status
from commands import grammar
from commands.base import Button, Command, Evidence, Reply, Role
from commands.http import ProviderError, ProviderRejected
from commands.words import plural


def when(moment: datetime | None, tz: ZoneInfo) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def next_run(
    scheduled: datetime | None, regular: datetime | None, tz: ZoneInfo, *, now: datetime
) -> str:
    """A schedule's next run. A snoozed reminder asks again before the cron's regular run,
    which stays where it was: both are shown."""
    if scheduled is not None and regular is not None and now < scheduled < regular:
        return f"{when(scheduled, tz)} (snoozed reminder), then {when(regular, tz)}"
    return when(scheduled, tz)


def unknown_slash(slash: str, known: Sequence[str]) -> str:
    guess = difflib.get_close_matches(slash, known, n=1, cutoff=0.6)
    if guess:
        return f"`/{slash}` is not one of my commands. Did you mean `/{guess[0]}`?"
    listed = ", ".join(f"`/{s}`" for s in known)
    return f"`/{slash}` is not one of my commands. I know {listed}; try `/billing help`."


def unknown_help_topic(topic: str, known: Sequence[str]) -> str:
    """`/billing help foo`: no such command; the nearest names, and where the list is."""
    guess = difflib.get_close_matches(topic.lower(), known, n=1, cutoff=0.6)
    hint = f" Did you mean `/billing help {guess[0]}`?" if guess else ""
    return f"There is no command `{topic}`.{hint} `/billing help` lists every command."


def provider_disabled(title: str, slash: str, env_prefix: str) -> str:
    return (
        f"{title} is not configured here, so `/{slash}` is switched off. "
        f"An admin can set the `{env_prefix}*` variables (docs/configuration.md) and restart."
    )


def working(name: str) -> str:
    return f"⏳ Working on `{name}`… the answer will be posted here when it is done."


def provider_says(exc: ProviderError) -> str:
    """The provider's part of a failure, naming the provider once: "SMSC has no invoice 999",
    "ActivePlatform is rate-limiting us", "VoIPcloud says the account is closed"."""
    message, provider = exc.message, exc.provider
    if message.lower().startswith(provider.lower()):
        return message
    if message.startswith("it "):  # commands.http.status_sentence speaks of "it"
        return f"{provider} {message.removeprefix('it ')}"
    if isinstance(exc, ProviderRejected):
        return f"{provider} says {message}"
    return f"{provider}: {message}"


def provider_failed(name: str, exc: ProviderError) -> str:
    return f"`{name}` failed: {provider_says(exc)}."


def not_requested(why: str) -> str:
    """Input an approval request could not be made concrete from (`Command.resolve`)."""
    return f"{why.rstrip('.')}. Nothing was put up for approval."


def not_prepared(name: str, exc: ProviderError) -> str:
    """The read that makes a request concrete (`accounts=all`) failed: nothing was asked."""
    return f"`{name}` was not put up for approval: {provider_says(exc)}."


def outcome_unknown(name: str, detail: str, hint: Reply | None) -> str:
    check = hint.text if hint else "Check at the provider whether it happened before asking again."
    return (
        f"❓ *Outcome unknown* for `{name}`: {detail}. It was not retried, because it may "
        f"already have happened. {check}"
    )


def internal_error(name: str, reference: str, idempotent: bool) -> str:
    tail = (
        "Nothing was retried."
        if idempotent
        else "It may or may not have reached the provider: check there before asking again."
    )
    return f"`{name}` hit an error inside the bot (reference `{reference}`). {tail}"


def progress_bar(name: str, done: int, total: int, label: str, width: int = 20) -> str:
    total = max(total, 1)
    filled = round(width * min(done, total) / total)
    bar = "█" * filled + "░" * (width - filled)
    percent = round(100 * min(done, total) / total)
    return f"`{name}` {label}\n`{bar}` {percent}% ({done}/{total})"


# --- approvals ----------------------------------------------------------------------------------


def _who(user: str) -> str:
    if user.startswith(("U", "W")):
        return f"<@{user}>"
    return user


def approved_by(approval: Approval, votes: Sequence[str]) -> str:
    """Everyone who approved a request, in the order they did: `<@U2>`, `<@U2> and <@U3>`,
    `<@U2>, <@U3> and <@U4>`. The one who decided it is named even without a vote of theirs
    (a request decided before votes were kept)."""
    names = [*votes]
    if approval.decided_by and approval.decided_by not in names:
        names.append(approval.decided_by)
    shown = [_who(n) for n in names] or ["nobody"]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} and {shown[-1]}"


def failed_after_ack(reference: str) -> str:
    return (
        f"Something went wrong inside the bot after your request was received (reference "
        f"{reference}); check `/billing approvals` or the audit log before trying again."
    )


# Said without the database (bot/slack/direct.py): the same words whatever failed, and no
# detail of the failure, which the log has.
DATABASE_DOWN = (
    "I could not record your request because my database is not answering right now, so "
    "nothing was done; please try again in a minute."
)


def database_down() -> str:
    return DATABASE_DOWN


# The same, once the request had reached its provider (bot/reached.py): it may have acted.
DATABASE_DOWN_AFTER_PROVIDER = (
    "Your request reached the provider, but I could not record what happened because my "
    "database is not answering right now; do not repeat it: check its result once I am back."
)


def database_down_after_provider() -> str:
    return DATABASE_DOWN_AFTER_PROVIDER


def not_storable(name: str) -> str:
    return (
        f"`{name}` cannot be put up for approval: its arguments cannot be stored exactly as "
        "given. Nothing was requested."
    )


def approval_card(
    approval: Approval,
    tz: ZoneInfo,
    *,
    votes: Sequence[str] = (),
    reasons: Sequence[tuple[str, str]] = (),
) -> Reply:
    fields = [("Command", command_field(approval)), ("Expires", when(approval.expires_at, tz))]
    if approval.rules:
        fields.append(("Rule", approval.rules))
    if approval.approvals_needed > 1 or approval.approver_role or votes:
        fields.append(("Approvals", approvals_progress(approval, votes)))
    return Reply(
        text=f"🔐 *Approval needed* · #{approval.id} · requested by {_who(approval.requester)}",
        sections=[approval.description, *reasons_shown(reasons)],
        fields=fields,
        buttons=[
            Button(
                label=approval.approve_label,
                command=f"/billing approve {approval.id}",
                style="primary",
            ),
            Button(
                label=approval.reject_label,
                command=f"/billing reject {approval.id} form=yes",
                style="danger",
            ),
            *(
                [
                    Button(
                        label=f"Snooze {approval.snooze_hours} h",
                        command=f"/billing snooze {approval.id}",
                    )
                ]
                if approval.snooze_hours
                else []
            ),
        ],
    )


def approval_running(
    approval: Approval, votes: Sequence[str], reasons: Sequence[tuple[str, str]] = ()
) -> Reply:
    """The card while an approved request runs; `approval` is the claimed row (its
    `decided_by` the approval that completed it), `votes` everyone who approved it, in order."""
    return Reply(
        text=f"⏳ #{approval.id} approved by {approved_by(approval, votes)}, running…",
        sections=[approval.description, *reasons_shown(reasons)],
        fields=[("Command", f"`{approval.command_line}`")],
    )


ICONS = {
    Status.DONE: "✅",
    Status.FAILED: "⚠️",
    Status.UNKNOWN: "❓",
    Status.REJECTED: "🚫",
    Status.EXPIRED: "⌛",
}


def approval_done(
    approval: Approval,
    outcome: Outcome,
    tz: ZoneInfo,
    *,
    reasons: Sequence[tuple[str, str]] = (),
    votes: Sequence[str] = (),
) -> Reply:
    icon = ICONS.get(outcome.status, "•")
    who = approved_by(approval, votes)
    if outcome.status is Status.UNKNOWN:
        check = (
            outcome.reply.text if outcome.reply else "Check at the provider before asking again."
        )
        head = f"{icon} #{approval.id} *outcome unknown* — approved by {who}"
        detail = (
            f"{outcome.summary}. It will not be retried. {check} *Check now* asks the provider; "
            f"an approver settles it with `/billing resolve {approval.id} done|not-done "
            'reason="…"`.'
        )
        buttons = [
            Button(
                label="Check now", command=f"/billing check-outcome {approval.id}", style="primary"
            ),
            *(outcome.reply.buttons if outcome.reply else []),
        ]
    else:
        head = f"{icon} #{approval.id} *{outcome.status.value}* — approved by {who}"
        detail = outcome.summary
        buttons = []
    return Reply(
        text=head,
        sections=[approval.description, *reasons_shown(reasons), detail],
        fields=[
            ("Requested by", _who(approval.requester)),
            ("Decided", when(approval.decided_at, tz)),
        ],
        buttons=buttons,
    )


SNOOZED = "snoozed until "


def snooze_reason(until: datetime | None) -> str:
    """The reason a snoozed request records: when it is asked again, exactly."""
    return f"{SNOOZED}{until.astimezone(UTC).isoformat()}" if until else "snoozed"


def snoozed_until(approval: Approval) -> datetime | None:
    """When a snoozed reminder is asked again, or None when the request was not snoozed."""
    reason = approval.reason or ""
    if not approval.snooze_hours or not reason.startswith(SNOOZED):
        return None
    try:
        return datetime.fromisoformat(reason.removeprefix(SNOOZED))
    except ValueError:
        return None


def snoozed(approval: Approval, tz: ZoneInfo) -> str:
    """What the person who snoozed a reminder is told."""
    until = snoozed_until(approval)
    again = f"until {when(until, tz)}" if until else "for now"
    return (
        f"#{approval.id} snoozed {again}: it will be asked again then, and its schedule keeps "
        "its regular runs."
    )


def approval_rejected(approval: Approval, tz: ZoneInfo) -> Reply:
    until = snoozed_until(approval)
    if until is not None:
        return Reply(
            text=(
                f"💤 #{approval.id} snoozed until {when(until, tz)} by "
                f"{_who(approval.decided_by or '?')}: it will be asked again then"
            ),
            sections=[approval.description],
            fields=[("Snoozed", when(approval.decided_at, tz))],
        )
    reason = f": {approval.reason}" if approval.reason else ""
    verb = "withdrawn" if approval.decided_by == approval.requester else "rejected"
    return Reply(
        text=f"🚫 #{approval.id} {verb} by {_who(approval.decided_by or '?')}{reason}",
        sections=[approval.description],
        fields=[("Decided", when(approval.decided_at, tz))],
    )


def approval_expired(approval: Approval, tz: ZoneInfo) -> Reply:
    return Reply(
        text=(
            f"⌛ #{approval.id} expired unapproved at {when(approval.expires_at, tz)}; nothing ran."
        ),
        sections=[approval.description],
    )


def claim_refused(
    approval_id: int, claim: Claim, row: Approval | None, votes: Sequence[str] = ()
) -> str:
    if claim is Claim.ALREADY_VOTED and row is not None:
        return (
            f"You have already approved #{approval_id} ({approvals_progress(row, votes)}); it "
            "needs another approver."
        )
    if claim is Claim.NOT_FOUND or row is None:
        return f"There is no approval request #{approval_id}."
    if claim is Claim.OWN_REQUEST:
        return (
            f"You requested #{approval_id} yourself: another approver must approve it "
            "(the two-person rule)."
        )
    if claim is Claim.EXPIRED:
        return f"Approval #{approval_id} has expired; request it again."
    who = ""
    if row.decided_by:  # a request that ran (or a ceiling refused) names everyone who approved it
        ran = row.status not in (Status.REJECTED, Status.EXPIRED)
        who = f" by {approved_by(row, votes) if ran else _who(row.decided_by)}"
    return f"Approval #{approval_id} is already {row.status.value}{who}; nothing was run again."


def overview(
    commands: Sequence[Command[Any, Any]], modes: Mapping[str, str], role: Role | None
) -> str:
    """`modes`: each provider's mode by name (live, sandbox, disabled)."""
    held = role.label if role else "no role"
    lines = [f"*billing-bot* — you are *{held}*. Commands you may run:"]
    for slash in sorted({c.slash for c in commands}):
        mine = [c for c in commands if c.slash == slash and role is not None and role >= c.role]
        mode = modes.get(slash)
        note = (
            " _(sandbox)_"
            if mode == "sandbox"
            else " _(not configured)_"
            if mode == "disabled"
            else ""
        )
        lines.append(f"*/{slash}*{note}")
        if not mine:
            lines.append("  _nothing for your role_")
        for command in mine:
            flag = " · approval" if command.approval else ""
            lines.append(f"  • `/{command.path}` — {command.summary}{flag}")
    lines.append("Add `help` after any command for its arguments and an example.")
    return "\n".join(lines)


# --- policies and unknown outcomes -------------------------------------------------------------


def command_field(approval: Approval, limit: int = 1800) -> str:
    """The stored command for a card's field (Slack cuts fields at 2,000 characters): a long
    one (hundreds of account ids) ends with where the whole of it is."""
    line = approval.command_line
    if len(line) <= limit:
        return f"`{line}`"
    return f"`{line[:limit]}…` (the whole command: `/billing approvals`)"


def approvals_progress(approval: Approval, votes: Sequence[str]) -> str:
    """`1 of 2: @U1` (and who may approve, when a rule asks for an admin)."""
    who = ", ".join(_who(v) for v in votes) or "none yet"
    role = " · admins only" if approval.approver_role == "admin" else ""
    return f"{len(votes)} of {approval.approvals_needed}: {who}{role}"


def approval_waiting(approval: Approval, votes: Sequence[str]) -> str:
    more = approval.approvals_needed - len(votes)
    return (
        f"Approval #{approval.id}: {len(votes)} of {approval.approvals_needed} approvals; "
        f"{plural(more, 'more approver')} needed (rules: {approval.rules})."
    )


def needs_admin(approval: Approval) -> str:
    return (
        f"Approval #{approval.id} needs an admin's approval (rules: {approval.rules}); you are "
        "not an admin."
    )


def ceiling_refused(name: str, refusal: str) -> str:
    return f"`{name}` was not requested: {refusal}."


def nothing_to_check(approval: Approval) -> str:
    return f"Approval #{approval.id} is {approval.status.value}: its outcome is known."


def settled_reason(found: Evidence, settled: str) -> str:
    """The reason a check's button records: the check when it settles what the check found,
    else the settlement first, said to go against the check ("done" after "It has not been
    booked." never reads as agreeing with it)."""
    if settled == found.verdict:
        return f"checked: {found.text}"
    return f"marked {settled} against the check, which found: {found.text}"


def evidence(approval: Approval, found: Evidence, *, settle: bool) -> Reply:
    """What a check found; with `settle`, buttons that record it as the resolution, each with a
    reason that says what it settles."""
    verdicts = {"done": "it happened", "not done": "it did not happen", "unclear": "unclear"}
    buttons: list[Button] = []
    if settle and found.verdict != "unclear":
        for outcome in ("done", "not-done"):
            settled = outcome.replace("-", " ")
            reason = settled_reason(found, settled)
            command = grammar.line(
                "billing resolve", id=approval.id, outcome=outcome, reason=reason
            )
            buttons.append(
                Button(
                    label=f"Mark {settled}",
                    command=command,
                    style="primary" if settled == found.verdict else None,
                )
            )
    return Reply(
        text=f"🔎 #{approval.id} `/{approval.command_path}`: {verdicts[found.verdict]}",
        sections=[found.text],
        buttons=buttons,
        private=True,
    )


def resolve_refused(approval_id: int, claim: Claim, row: Approval | None) -> str:
    if claim is Claim.NOT_FOUND or row is None:
        return f"There is no approval request #{approval_id}."
    if claim is Claim.OWN_REQUEST:
        return f"You requested #{approval_id} yourself: another approver must settle its outcome."
    if row.resolution:
        return (
            f"Approval #{approval_id} was already settled as {row.resolution} by "
            f"{_who(row.resolved_by or '')}."
        )
    return f"Approval #{approval_id} is {row.status.value}: only an unknown outcome is settled."


def approval_resolved(approval: Approval, tz: ZoneInfo) -> Reply:
    icon = "✅" if approval.resolution == "done" else "🚫"
    return Reply(
        text=(
            f"{icon} #{approval.id} outcome settled as *{approval.resolution}* by "
            f"{_who(approval.resolved_by or '')}"
        ),
        sections=[approval.description, f"Reason: {approval.resolution_reason or '–'}"],
        fields=[
            ("Requested by", _who(approval.requester)),
            ("Settled", when(approval.resolved_at, tz)),
        ],
    )


def resolved(approval: Approval) -> str:
    again = (
        " Request it again if it should still happen." if approval.resolution == "not done" else ""
    )
    return f"Approval #{approval.id} settled as {approval.resolution}.{again}"


def no_check(name: str, hint: str) -> str:
    return (
        f"No read of the provider can show whether `{name}` happened, so check by hand. {hint}"
    ).strip()


def withdrawn(approval_id: int) -> str:
    return f"Approval request #{approval_id} withdrawn: the command was cancelled."


def cut_off(approval_id: int) -> str:
    return (
        f"❓ Approval #{approval_id} was cancelled while it ran, so its outcome is unknown. "
        "Check at the provider before asking again; it will not be re-run."
    )


# --- notices (bot/approvals/notices.py) ---------------------------------------------------------


def approver_notice(approval: Approval, tz: ZoneInfo) -> Reply:
    """The direct message to each person who could approve a new request."""
    fields = [("Command", command_field(approval, 900)), ("Expires", when(approval.expires_at, tz))]
    if approval.rules:
        fields.append(("Rule", approval.rules))
    if approval.approvals_needed > 1 or approval.approver_role:
        fields.append(("Approvals", approvals_progress(approval, ())))
    return Reply(
        text=f"🔐 {_who(approval.requester)} asks for an approval: #{approval.id}",
        sections=[
            approval.description,
            f"Decide on its card, or type `/billing approve {approval.id}` or "
            f"`/billing reject {approval.id} reason…`.",
        ],
        fields=fields,
    )


def approval_reminder(
    approval: Approval,
    votes: Sequence[str],
    can_approve: Sequence[str],
    needed: Role,
    tz: ZoneInfo,
) -> Reply:
    """The reminder in a card's thread at half its time to live, naming who can still approve."""
    if can_approve:
        who = "Who can still approve it: " + ", ".join(_who(u) for u in can_approve) + "."
    else:
        grant = " or ".join(r.variable for r in Role if r >= needed)
        who = f"Nobody listed in {grant} can approve it now."
    progress = f" ({approvals_progress(approval, votes)})" if votes else ""
    return Reply(
        text=(
            f"⏰ #{approval.id} is still waiting for approval{progress}; it expires "
            f"{when(approval.expires_at, tz)}. {who}"
        )
    )


def decision_notice(approval: Approval, tz: ZoneInfo, votes: Sequence[str] = ()) -> Reply:
    """The requester's direct message once their request is decided or expires; `votes`:
    everyone who approved it, in order."""
    by = _who(approval.decided_by or "?")
    ran = approved_by(approval, votes)
    detail = approval.outcome or ""
    heads = {
        Status.DONE: f"✅ Your request #{approval.id} was approved by {ran}: *done*",
        Status.FAILED: f"⚠️ Your request #{approval.id} was approved by {ran} and *failed*",
        Status.UNKNOWN: f"❓ Your request #{approval.id}, approved by {ran}: *outcome unknown*",
        Status.REJECTED: f"🚫 Your request #{approval.id} was rejected by {by}",
        Status.EXPIRED: (
            f"⌛ Your request #{approval.id} expired unapproved at "
            f"{when(approval.expires_at, tz)}; nothing ran"
        ),
    }
    if approval.status is Status.REJECTED:
        detail = f"Reason: {approval.reason}" if approval.reason else ""
    if approval.status is Status.UNKNOWN and approval.resolution:  # settled: say how
        heads[Status.UNKNOWN] = (
            f"Your request #{approval.id}, approved by {by}: *{approval.resolution}*"
        )
        detail = approval.resolution_reason or ""
    elif approval.status is Status.UNKNOWN:
        detail = (
            f"{detail}. It will not be retried; an approver settles it with "
            f'`/billing resolve {approval.id} done|not-done reason="…"`.'
        )
    head = heads.get(approval.status, f"Your request #{approval.id} is {approval.status.value}")
    return Reply(text=head, sections=[s for s in (approval.description, detail) if s])


def reasons_shown(reasons: Sequence[tuple[str, str]]) -> list[str]:
    """Why each approver approved, for the card (a rule's `reason: required`)."""
    return [f"*Reason* ({_who(user)}): {why}" for user, why in reasons]


def with_reason(detail: str, reason: str | None) -> str:
    """An audit detail with the approver's reason, when they gave one."""
    return f"{detail}; reason: {reason}" if reason else detail
