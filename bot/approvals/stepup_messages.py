"""The sentences of step-up codes and reasons: approving with a code, `/billing mfa …`.

Kept beside `bot.messages` (the bot's other sentences), which they would push past the size a
module may have."""

from __future__ import annotations

from bot.messages import _who
from commands.words import plural

# --- step-up codes and reasons -----------------------------------------------------------------

ENROL = "`/billing mfa enroll`"


def step_up_not_enrolled(approval_id: int) -> str:
    return (
        f"Approval #{approval_id} needs your authenticator code, and you have no authenticator "
        f"set up: run {ENROL} (the bot sends you a QR code in a direct message), then "
        f"`/billing mfa confirm <code>`, and approve again. Your click did not count."
    )


def approval_asked(approval_id: int, *, code: bool, reason: bool) -> str:
    return f"Approval #{approval_id} needs {_asked(code, reason)}: asked in the form that opened."


def approval_unasked(approval_id: int, *, code: bool, reason: bool) -> str:
    """No form could be opened here: how to give the answers typed."""
    parts = [f"/billing approve {approval_id}"]
    if code:
        parts.append("code=<6 digits>")
    if reason:
        parts.append('reason="…"')
    return (
        f"Approval #{approval_id} needs {_asked(code, reason)}. Use the card's button, or type "
        f"`{' '.join(parts)}`. Nothing was approved."
    )


def _asked(code: bool, reason: bool) -> str:
    what = [*(["your authenticator code"] if code else []), *(["a reason"] if reason else [])]
    return " and ".join(what)


def reason_too_short(what: str, words: int) -> str:
    return f"{what} needs a reason of at least {words} words (why, for the audit log)."


def reject_needs_reason(approval_id: int) -> str:
    return (
        f"Rejecting #{approval_id} needs a reason: `/billing reject {approval_id} <why>`, or the "
        "card's Reject button. Nothing was rejected."
    )


def code_refused(approval_id: int, verdict: str, tries_left: int, until: str | None) -> str:
    """A code that did not count: wrong, used already, or step-up locked."""
    head = f"Approval #{approval_id} was not approved: "
    if verdict == "replayed":
        return head + "that code was used already; wait for the next one and approve again."
    if verdict == "locked" or until is not None:
        return (
            head + f"too many wrong codes, so your step-up is locked until {until or 'later'}. "
            "An admin can reset it with `/billing mfa reset`."
        )
    return (
        head + f"the code is wrong ({plural(tries_left, 'try', 'tries')} left before a "
        "15-minute lock). Check your authenticator app's clock and approve again."
    )


# --- enrolment (`/billing mfa`) ----------------------------------------------------------------


def already_enrolled() -> str:
    return (
        "You are enrolled already. To move to another authenticator, ask an admin for "
        "`/billing mfa reset <@you>`, then enrol again."
    )


def enrolment(uri: str, seed: str) -> str:
    """The direct message of a new enrolment: for its person alone."""
    grouped = " ".join(seed[i : i + 4] for i in range(0, len(seed), 4))
    return (
        "*Step-up codes for billing-bot.* Scan the QR code below with your authenticator app "
        f"(or add this link: {uri} — or type the key `{grouped}`, time-based, 6 digits, 30 s). "
        "Then confirm with the first code it shows: the button below, or "
        "`/billing mfa confirm <code>`. Keep this message to yourself; delete it once confirmed."
    )


def enrolment_sent() -> str:
    return "Sent to your direct messages: scan the QR code there, then confirm with the first code."


def enrolment_not_sent() -> str:
    return (
        "I could not send your enrolment to your direct messages (Slack refused or is away). "
        "Run `/billing mfa enroll` again in a minute: each run makes a new one, and only the "
        "newest can be confirmed."
    )


def nothing_to_confirm(enrolled: bool) -> str:
    if enrolled:
        return "You are enrolled already: nothing to confirm."
    return "You have no enrolment to confirm: start with `/billing mfa enroll`."


def enrolled() -> str:
    return "Step-up enrolled: approvals that ask for a code now take the codes of your app."


def confirm_refused(verdict: str, tries_left: int, until: str | None) -> str:
    if verdict == "locked" or until is not None:
        return (
            f"Too many wrong codes: confirming is locked until {until or 'later'}. Check your "
            "authenticator app's clock, or enrol again."
        )
    if verdict == "replayed":
        return "That code was used already: wait for the next one."
    return (
        f"That code is wrong ({plural(tries_left, 'try', 'tries')} left before a 15-minute "
        "lock). Check your authenticator app's clock."
    )


def enrolment_status(status: object) -> str:
    text = str(status)
    if text == "enrolled":
        return "You are enrolled for step-up codes."
    if text == "not enrolled":
        return "You are not enrolled for step-up codes: `/billing mfa enroll` sets it up."
    return (
        "Your enrolment waits for its first code: `/billing mfa confirm <code>` (or "
        "`/billing mfa enroll` again for a new QR code)."
    )


def nothing_to_reset(user: str) -> str:
    return f"{_who(user)} has no step-up enrolment; nothing was reset."


def reset_told(admin: str) -> str:
    return (
        f"{_who(admin)} reset your step-up enrolment: approvals that ask for a code need a new "
        "one. Run `/billing mfa enroll` to set it up again."
    )


def reset_done(user: str, *, told: bool) -> str:
    note = "they were told in a direct message" if told else "I could not tell them: please do"
    return f"Step-up enrolment of {_who(user)} reset; {note}."
