"""What `billing-bot audit verify --anchors` makes of the anchors read back from the channel
beside the anchors table: which anchors the chain is checked against, and what differs."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.anchors import Posted, compare, posted
from bot.storage.anchors import COMMAND, DAILY, Anchor
from bot.storage.chain import Link

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


def kept(seq: int, digest: str, ts: str | None, channel: str = "C1") -> Anchor:
    return Anchor(
        id=seq,
        seq=seq,
        hash=digest,
        at=AT,
        by="daily-anchor",
        how=DAILY if seq % 2 else COMMAND,
        day=None,
        channel=channel,
        ts=ts,
    )


def test_a_payload_reads_as_a_row_and_its_hash() -> None:
    assert posted("1.1", {"seq": "41", "hash": A, "how": "daily"}) == Posted("1.1", Link(41, A))
    for payload in (
        {"seq": "41"},
        {"seq": "-41", "hash": A},
        {"seq": "41", "hash": A.upper()},
        {"seq": "41", "hash": A[:-1]},
        {"seq": 41, "hash": A},
        {"seq": "41", "hash": "••••••"},
    ):
        assert posted("1.1", payload) == Posted("1.1", None), payload


def test_the_channel_and_the_table_agreeing_verify_against_every_anchor() -> None:
    result = compare(
        [kept(3, A, "1.3"), kept(7, B, "1.7")],
        [Posted("1.7", Link(7, B)), Posted("1.3", Link(3, A)), Posted("1.8", Link(7, B))],
        "C1",
    )
    assert result.ok
    assert set(result.anchors) == {Link(3, A), Link(7, B)}
    assert result.lines() == ["anchors: 3 in C1, 2 kept in the database"]


def test_what_one_has_and_the_other_lacks_is_named() -> None:
    result = compare(
        [kept(3, A, "1.3"), kept(5, B, "1.5"), kept(9, C, None), kept(1, A, "0.1", "C0OLD")],
        [Posted("1.3", Link(3, A)), Posted("1.7", Link(7, C)), Posted("1.8", None)],
        "C1",
        others=2,
    )
    assert not result.ok
    assert result.lines() == [
        "anchors: 3 in C1, 3 kept in the database",
        "2 messages of the same event type posted by another app or a person ignored",
        "1 anchor kept for another channel not compared (BILLING_CHANNEL changed since)",
        "the anchor of row 9 taken 2026-11-02T09:00:00+00:00 is not in the channel yet "
        "(waiting to be posted)",
        "the anchor message 1.8 in the channel does not say which row it anchors (its metadata "
        "has no readable seq and hash)",
        "the anchor of row 7 in the channel (message 1.7) is not in the anchors table",
        "the anchor of row 5 kept in the table (message 1.5) is not in the channel",
    ]
    # the chain is still checked against each: the table's, and the channel's
    assert set(result.anchors) == {Link(3, A), Link(5, B), Link(9, C), Link(7, C)}


def test_where_the_two_name_one_row_differently_the_channel_s_hash_is_checked_last() -> None:
    result = compare([kept(4, A, "1.4")], [Posted("1.4", Link(4, B))], "C1")
    assert result.anchors[-1] == Link(4, B)  # a Walk keeps the last anchor of a row
    assert len(result.problems) == 2


def test_a_waiting_anchor_alone_does_not_fail() -> None:
    result = compare([kept(2, A, None)], [], "C1")
    assert result.ok and result.notes and result.anchors == [Link(2, A)]
