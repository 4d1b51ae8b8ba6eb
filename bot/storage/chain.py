"""The audit log's hash chain, without a database: the canonical encoding, the hash, and the
walk that finds the first broken row.

Every audit row carries `seq` (1, 2, 3, … with no gap), `prev_hash` (the previous row's `hash`;
64 zeros for row 1) and `hash`: the lowercase hex SHA-256 (FIPS 180-4) of the row's canonical
encoding, which is the UTF-8 of one JSON object (RFC 8259) written with

- the keys sorted, no whitespace (`","` and `":"` as separators), every character outside ASCII
  as a `\\uXXXX` escape (Python's `json.dumps(sort_keys=True, separators=(",", ":"))`);
- `seq` (integer) and `prev_hash` (64 lowercase hex digits), then the row's fields (`FIELDS`);
- `at` as UTC with microseconds always written: `"2026-05-04T09:00:01.234000Z"`, whatever
  zone the datetime was given in (a naive datetime is refused: its zone is unknown);
- text as stored, `null` for NULL, so `""` and NULL differ; integers as JSON integers.

Both databases give these values back exactly as written (UTC timestamps to the microsecond,
text, NULL and integers; `bot/storage/audit.py` cuts text to its column's length before it
hashes), so a row hashes the same before the INSERT and after a round trip through SQLite or
PostgreSQL. The row's `id` is not hashed: the sequence number is the row's place in the chain.

`Walk` checks rows in sequence order and stops at the first that breaks the chain:

- a sequence number skipped: that row is **missing** (deleted);
- a sequence number not above the previous one, or a `prev_hash` that is not the previous
  row's `hash`: the row was **inserted out of sequence** (added, or moved from elsewhere);
- a `hash` that is not the hash of the row's contents: the row was **edited**;
- an anchor (a `(seq, hash)` pair kept elsewhere: posted to a channel, or remembered by the
  process) that names a row whose hash differs: the chain was rewritten from there (**edited**),
  or one beyond the last row: the rows after the last one were deleted (**missing**).

Deleting the newest rows, or rewriting every hash from some row on, leaves a chain that is
consistent in itself: only an anchor taken earlier shows it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
FIELDS = (
    "at",
    "user_id",
    "channel",
    "command",
    "args",
    "decision",
    "outcome",
    "detail",
    "provider",
    "provider_status",
    "duration_ms",
    "approval_id",
)
EDITED = "edited"
MISSING = "missing"
INSERTED = "inserted out of sequence"


@dataclass(frozen=True)
class Link:
    """A row's place in the chain: its sequence number and hash (the head, or an anchor)."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Break:
    """The first row that breaks the chain, what is wrong with it, and how it shows."""

    seq: int
    kind: str  # EDITED, MISSING or INSERTED
    why: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.kind} ({self.why})"


@dataclass(frozen=True)
class Verdict:
    rows: int  # rows found intact before the break (all of them when there is none)
    head: Link | None  # the last intact row
    broken: Break | None

    def __str__(self) -> str:
        if self.broken is not None:
            return str(self.broken)
        if self.head is None:
            return "intact: 0 rows (the audit log is empty)"
        return f"intact: {self.rows} rows, head {self.head.seq} {self.head.hash}"


def stamp(at: datetime) -> str:
    if at.utcoffset() is None:
        raise ValueError("an audit time without a time zone cannot be hashed")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(seq: int, prev_hash: str, fields: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash is taken of (see the module's docstring)."""
    values = {name: fields[name] for name in FIELDS}
    values["at"] = stamp(fields["at"])
    values["seq"] = seq
    values["prev_hash"] = prev_hash
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode()


def digest(seq: int, prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(seq, prev_hash, fields)).hexdigest()


def seal(fields: Mapping[str, Any], head: Link | None) -> dict[str, Any]:
    """The chain columns of a row appended after `head` (None: the first row)."""
    seq = head.seq + 1 if head else 1
    prev_hash = head.hash if head else GENESIS
    return {"seq": seq, "prev_hash": prev_hash, "hash": digest(seq, prev_hash, fields)}


class Walk:
    """Checks rows one at a time, in sequence order, from the start of the chain or from a
    row already checked (`start`), against the anchors given. Once broken it stays broken."""

    def __init__(self, start: Link | None = None, anchors: Iterable[Link] = ()) -> None:
        self.head = start
        self.rows = 0
        self.broken: Break | None = None
        self.anchors = {anchor.seq: anchor.hash for anchor in anchors}

    def add(self, row: Mapping[str, Any]) -> Break | None:
        """Checks the next row; returns the break it found (once found, always that one)."""
        if self.broken is None:
            self.broken = self._check(row)
            if self.broken is None:
                self.head = Link(row["seq"], row["hash"])
                self.rows += 1
        return self.broken

    def _check(self, row: Mapping[str, Any]) -> Break | None:
        seq = row["seq"]
        expected = self.head.seq + 1 if self.head else 1
        if seq > expected:
            return Break(expected, MISSING, f"the next row is row {seq}")
        if seq < expected:
            return Break(seq, INSERTED, f"it comes after row {expected - 1}")
        if row["prev_hash"] != (self.head.hash if self.head else GENESIS):
            before = f"row {seq - 1}" if self.head else "the start of the chain"
            return Break(seq, INSERTED, f"it does not follow {before}")
        if row["hash"] != digest(seq, row["prev_hash"], row):
            return Break(seq, EDITED, "its contents do not match its hash")
        if self.anchors.get(seq, row["hash"]) != row["hash"]:
            return Break(seq, EDITED, "its hash is not the anchored one: rewritten from here")
        return None

    def end(self) -> Verdict:
        """The verdict once every row was added: an anchor past the last row means the rows
        after it were deleted."""
        last = self.head.seq if self.head else 0
        beyond = [seq for seq in self.anchors if seq > last]
        if self.broken is None and beyond:
            why = f"the log ends at row {last}, but row {max(beyond)} was anchored"
            self.broken = Break(last + 1, MISSING, why)
        return Verdict(self.rows, self.head, self.broken)


def verify(
    rows: Iterable[Mapping[str, Any]], *, start: Link | None = None, anchors: Iterable[Link] = ()
) -> Verdict:
    """Walks `rows` (in sequence order) and says where the chain first breaks, if it does.
    Ask whether `(seq, hash)` is on the chain with `anchors=[Link(seq, hash)]`."""
    walk = Walk(start, anchors)
    for row in rows:
        if walk.add(row) is not None:
            break
    return walk.end()
