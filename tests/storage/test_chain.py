"""The audit chain without a database: the encoding is fixed, and any edit, deletion, insertion
or swap of rows is found at exactly the first sequence number it broke, with what is wrong."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.storage.chain import (
    EDITED,
    FIELDS,
    GENESIS,
    INSERTED,
    MISSING,
    Break,
    Link,
    Verdict,
    Walk,
    canonical,
    digest,
    seal,
    stamp,
    verify,
)

Row = dict[str, Any]
AT = datetime(2026, 5, 4, 9, 0, 1, 234000, tzinfo=UTC)


def fields(**changes: Any) -> Row:
    values: Row = {
        "at": AT,
        "user_id": "U1",
        "channel": "C1",
        "command": "/voipcloud move-funds",
        "args": '{"amount": "12.50"}',
        "decision": "executed",
        "outcome": "done",
        "detail": "Moved 12.50 € to 10023",
        "provider": "voipcloud",
        "provider_status": 200,
        "duration_ms": 842,
        "approval_id": None,
    }
    values.update(changes)
    return values


def chained(contents: list[Row]) -> list[Row]:
    """Rows as the audit log appends them."""
    rows: list[Row] = []
    for content in contents:
        head = Link(rows[-1]["seq"], rows[-1]["hash"]) if rows else None
        rows.append({**content, **seal(content, head)})
    return rows


def where(verdict: Verdict) -> tuple[int, str] | None:
    return None if verdict.broken is None else (verdict.broken.seq, verdict.broken.kind)


# --- the encoding ------------------------------------------------------------------------------


def test_the_encoding_is_sorted_compact_ascii_json_with_utc_microseconds() -> None:
    encoded = canonical(7, "ab" * 32, fields())
    assert encoded == (
        b'{"approval_id":null,"args":"{\\"amount\\": \\"12.50\\"}",'
        b'"at":"2026-05-04T09:00:01.234000Z",'
        b'"channel":"C1","command":"/voipcloud move-funds","decision":"executed",'
        b'"detail":"Moved 12.50 \\u20ac to 10023","duration_ms":842,"outcome":"done",'
        b'"prev_hash":"' + b"ab" * 32 + b'","provider":"voipcloud","provider_status":200,"seq":7,'
        b'"user_id":"U1"}'
    )
    assert digest(7, "ab" * 32, fields()) == hashlib.sha256(encoded).hexdigest()


def test_a_time_hashes_the_same_in_any_zone_and_always_with_microseconds() -> None:
    lisbon_summer = timezone(timedelta(hours=1))
    same = AT.astimezone(lisbon_summer)
    assert canonical(1, GENESIS, fields(at=same)) == canonical(1, GENESIS, fields())
    assert stamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert stamp(datetime(2026, 1, 2, 3, 4, 5, 1, tzinfo=lisbon_summer)) == (
        "2026-01-02T02:04:05.000001Z"
    )


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        canonical(1, GENESIS, fields(at=AT.replace(tzinfo=None)))
    assert str(refused.value) == "an audit time without a time zone cannot be hashed"


@pytest.fixture
def machine_in_sao_paulo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/Sao_Paulo")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("machine_in_sao_paulo")
def test_a_time_is_written_in_utc_whatever_zone_the_machine_is_in() -> None:
    assert datetime(2026, 1, 2, 12, 0).astimezone().utcoffset() == timedelta(hours=-3)
    assert stamp(AT) == "2026-05-04T09:00:01.234000Z"


def test_null_empty_text_and_zero_hash_differently() -> None:
    hashes = {
        digest(1, GENESIS, fields(approval_id=None)),
        digest(1, GENESIS, fields(approval_id=0)),
        digest(1, GENESIS, fields(detail="")),
        digest(1, GENESIS, fields(detail=None)),
    }
    assert len(hashes) == 4


def test_the_id_and_other_columns_are_not_hashed() -> None:
    assert canonical(1, GENESIS, {**fields(), "id": 99, "hash": "x"}) == canonical(
        1, GENESIS, fields()
    )


def test_sealing_links_a_row_to_the_head() -> None:
    assert seal(fields(), None) == {
        "seq": 1,
        "prev_hash": GENESIS,
        "hash": digest(1, GENESIS, fields()),
    }
    assert GENESIS == "0" * 64
    assert seal(fields(), Link(4, "cd" * 32)) == {
        "seq": 5,
        "prev_hash": "cd" * 32,
        "hash": digest(5, "cd" * 32, fields()),
    }


# --- what verify says --------------------------------------------------------------------------


def test_an_empty_log_is_intact() -> None:
    verdict = verify([])
    assert verdict == Verdict(0, None, None)
    assert str(verdict) == "intact: 0 rows (the audit log is empty)"


def test_an_intact_log_names_its_head() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(3)])
    verdict = verify(rows)
    assert verdict == Verdict(3, Link(3, rows[2]["hash"]), None)
    assert str(verdict) == f"intact: 3 rows, head 3 {rows[2]['hash']}"


def test_each_break_says_which_row_and_what_is_wrong() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(4)])

    edited = [dict(r) for r in rows]
    edited[1]["detail"] = "run 99"
    verdict = verify(edited)
    assert verdict == Verdict(1, Link(1, rows[0]["hash"]), verdict.broken)
    assert str(verdict) == "row 2: edited (its contents do not match its hash)"

    assert str(verify(rows[:1] + rows[2:])) == "row 2: missing (the next row is row 3)"
    assert (
        str(verify(rows[:2] + rows[1:])) == "row 2: inserted out of sequence (it comes after row 2)"
    )
    moved = [rows[0], {**rows[2], "seq": 2}]
    assert str(verify(moved)) == "row 2: inserted out of sequence (it does not follow row 1)"
    first = [{**rows[1], "seq": 1}]
    assert str(verify(first)) == (
        "row 1: inserted out of sequence (it does not follow the start of the chain)"
    )
    assert str(verify(rows[1:])) == "row 1: missing (the next row is row 2)"


def test_a_break_reads_as_its_row_kind_and_reason() -> None:
    assert str(Break(7, EDITED, "why")) == "row 7: edited (why)"
    assert (EDITED, MISSING, INSERTED) == ("edited", "missing", "inserted out of sequence")


def test_verify_stops_reading_at_the_first_break() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(3)])

    def read() -> Iterator[Row]:
        yield rows[0]
        yield {**rows[1], "detail": "changed"}
        raise AssertionError("read past the first break")

    assert where(verify(read())) == (2, EDITED)


def test_a_walk_stays_at_its_first_break() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(3)])
    walk = Walk()
    assert walk.add(rows[0]) is None
    broken = walk.add({**rows[1], "detail": "changed"})
    assert broken == Break(2, EDITED, "its contents do not match its hash")
    assert walk.add(rows[2]) == broken  # a good row after it changes nothing
    assert walk.end() == Verdict(1, Link(1, rows[0]["hash"]), broken)


def test_a_walk_goes_on_from_a_row_already_checked() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(5)])
    start = Link(2, rows[1]["hash"])
    assert verify(rows[2:], start=start) == Verdict(3, Link(5, rows[4]["hash"]), None)
    assert verify([], start=start) == Verdict(0, start, None)
    wrong = Link(2, "ff" * 32)
    assert str(verify(rows[2:], start=wrong)) == (
        "row 3: inserted out of sequence (it does not follow row 2)"
    )


# --- anchors -----------------------------------------------------------------------------------


def test_an_anchor_on_the_chain_is_found_there() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(4)])
    for row in rows:
        assert verify(rows, anchors=[Link(row["seq"], row["hash"])]).broken is None


def test_an_anchor_off_the_chain_breaks_it_at_the_anchored_row() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(4)])
    verdict = verify(rows, anchors=[Link(1, rows[0]["hash"]), Link(3, "ee" * 32)])
    assert verdict == Verdict(2, Link(2, rows[1]["hash"]), verdict.broken)
    assert str(verdict) == ("row 3: edited (its hash is not the anchored one: rewritten from here)")


def test_a_chain_rewritten_from_a_row_on_is_found_only_by_an_anchor() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(4)])
    forged = chained([fields(detail=f"run {n}") for n in (0, 1, 99, 3)])
    assert forged[:2] == rows[:2] and forged[3]["detail"] == rows[3]["detail"]
    assert verify(forged).broken is None  # consistent in itself
    assert str(verify(forged, anchors=[Link(4, rows[3]["hash"])])) == (
        "row 4: edited (its hash is not the anchored one: rewritten from here)"
    )


def test_an_anchor_past_the_last_row_means_the_newest_rows_were_deleted() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(5)])
    assert verify(rows[:3]).broken is None  # a shorter chain is consistent in itself
    anchors = [Link(4, rows[3]["hash"]), Link(5, rows[4]["hash"])]
    verdict = verify(rows[:3], anchors=anchors)
    assert verdict == Verdict(3, Link(3, rows[2]["hash"]), verdict.broken)
    assert str(verdict) == "row 4: missing (the log ends at row 3, but row 5 was anchored)"
    assert str(verify([], anchors=anchors[:1])) == (
        "row 1: missing (the log ends at row 0, but row 4 was anchored)"
    )
    assert verify([], start=Link(3, rows[2]["hash"]), anchors=[Link(3, rows[2]["hash"])]) == (
        Verdict(0, Link(3, rows[2]["hash"]), None)
    )


def test_an_anchor_is_not_reported_past_an_earlier_break() -> None:
    rows = chained([fields(detail=f"run {n}") for n in range(3)])
    verdict = verify(rows[:1] + rows[2:], anchors=[Link(9, "aa" * 32)])
    assert str(verdict) == "row 2: missing (the next row is row 3)"


# --- tampering, at random ----------------------------------------------------------------------

HEX = "0123456789abcdef"
texts = st.text(max_size=12)
numbers = st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1)
zones = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
)
hashes = st.text(alphabet=HEX, min_size=64, max_size=64)
NUMBERS = ("provider_status", "duration_ms", "approval_id")


def value_of(name: str) -> st.SearchStrategy[Any]:
    if name == "at":
        return times
    if name in NUMBERS:
        return numbers
    if name in ("prev_hash", "hash"):
        return hashes
    return texts


contents = st.fixed_dictionaries({name: value_of(name) for name in FIELDS})


def same(a: Row, b: Row) -> bool:
    return canonical(1, GENESIS, a) == canonical(1, GENESIS, b)


@dataclass
class Tampered:
    rows: list[Row]
    expected: tuple[int, str] | None  # where verify must say the chain first breaks


def renumbered(rows: list[Row], by: int) -> list[Row]:
    return [{**row, "seq": row["seq"] + by} for row in rows]


@st.composite
def tampered(draw: st.DrawFn) -> Tampered:
    rows = chained(draw(st.lists(contents, min_size=1, max_size=8)))
    n = len(rows)
    kind = draw(st.sampled_from(["edit", "delete", "insert", "forge", "swap", "exchange"]))
    if kind == "edit":  # one column of one row changed in place
        k = draw(st.integers(1, n))
        name = draw(st.sampled_from([*FIELDS, "prev_hash", "hash"]))
        old = rows[k - 1]
        changed = {**old, name: draw(value_of(name))}
        assume(
            changed[name] != old[name] if name in ("prev_hash", "hash") else not same(changed, old)
        )
        rows[k - 1] = changed
        return Tampered(rows, (k, INSERTED if name == "prev_hash" else EDITED))
    if kind == "delete":  # one row deleted; deleting the newest leaves a consistent chain
        k = draw(st.integers(1, n))
        del rows[k - 1]
        return Tampered(rows, None if k == n else (k, MISSING))
    if kind == "insert":  # a row put in at k, the rows after it renumbered to make room
        k = draw(st.integers(1, n + 1))
        new = {**draw(contents), "seq": k, "prev_hash": draw(hashes), "hash": draw(hashes)}
        assume(new["prev_hash"] != (rows[k - 2]["hash"] if k > 1 else GENESIS))
        rows = rows[: k - 1] + [new] + renumbered(rows[k - 1 :], 1)
        return Tampered(rows, (k, INSERTED))
    if kind == "forge":  # the same, with a row that links properly to the one before it
        k = draw(st.integers(1, n + 1))
        new = draw(contents)
        head = Link(rows[k - 2]["seq"], rows[k - 2]["hash"]) if k > 1 else None
        rows = rows[: k - 1] + [{**new, **seal(new, head)}] + renumbered(rows[k - 1 :], 1)
        return Tampered(rows, None if k == n + 1 else (k + 1, INSERTED))
    assume(n >= 2)
    j, k = sorted(draw(st.lists(st.integers(1, n), min_size=2, max_size=2, unique=True)))
    if kind == "swap":  # two rows trade places (their sequence numbers)
        rows[j - 1], rows[k - 1] = {**rows[k - 1], "seq": j}, {**rows[j - 1], "seq": k}
        return Tampered(rows, (j, INSERTED))
    # two rows trade contents, each keeping its place in the chain
    a, b = rows[j - 1], rows[k - 1]
    chain_a, chain_b = ({c: r[c] for c in ("seq", "prev_hash", "hash")} for r in (a, b))
    rows[j - 1], rows[k - 1] = {**b, **chain_a}, {**a, **chain_b}
    return Tampered(rows, None if same(a, b) else (j, EDITED))


@given(st.lists(contents, max_size=10))
def test_rows_as_appended_verify(contents_: list[Row]) -> None:
    rows = chained(contents_)
    verdict = verify(rows)
    assert verdict.broken is None and verdict.rows == len(rows)
    assert verdict.head == (Link(len(rows), rows[-1]["hash"]) if rows else None)


@given(tampered())
def test_tampering_is_found_at_exactly_the_first_broken_row(case: Tampered) -> None:
    assert where(verify(case.rows)) == case.expected
