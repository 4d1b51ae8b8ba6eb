"""Where each approval's card is: its outbox key, and its message kept on the approval's row.

The outbox posts a card late when Slack was failing; `Cards.posted` records where it landed, and
`Cards.locate` answers for cards posted before the outbox kept their keys (`bot.slack.outbox`
asks both through its `Places` protocol).
"""

from __future__ import annotations

from bot.approvals.state import Approvals
from bot.surface import MessageRef

CARD = "approval:"


def card_key(approval_id: int) -> str:
    """The outbox key of an approval's card: its post and every update go in order."""
    return f"{CARD}{approval_id}"


def card_of(key: str) -> int | None:
    """The approval whose card an outbox key names (`card_key`), or None."""
    return number_after(CARD, key)


def number_after(prefix: str, text: str) -> int | None:
    number = text.removeprefix(prefix)
    return int(number) if text.startswith(prefix) and number.isdigit() else None


class Cards:
    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals

    async def posted(self, key: str, ref: MessageRef) -> None:
        """The outbox posted a card late (Slack was failing): remember where it is."""
        if (approval_id := card_of(key)) is not None:
            await self.approvals.attach_message(approval_id, ref)

    async def locate(self, key: str) -> MessageRef | None:
        """Where a card is, for cards posted before the outbox kept their keys."""
        approval_id = card_of(key)
        if approval_id is None:
            return None
        row = await self.approvals.get(approval_id)
        return row.ref if row else None
