"""The provider's answers the database could not take, kept on local disk until it can.

    approved run ─► provider answers ─► audit row / finish fail (database away)
                                             │
                                             ▼
                     BILLING_SPOOL_DIR/approval-<id>.json   (redacted, tmp + fsync + rename)
                                             │ the sweeper, and the start
                                             ▼
                     bot/approvals/late.py: the approval settled with that answer, file removed

One JSON file per approval, written atomically: a temporary file in the same directory, fsync,
then `os.replace` (atomic on POSIX, https://pubs.opengroup.org/onlinepubs/9699919799/functions/rename.html),
and the directory fsynced so the rename itself survives a power cut. The summary is redacted
(`commands.secrets.redact`) before it touches the disk, as audit rows are. The first answer kept
for an approval wins: a later, vaguer one ("the bot failed while running it") never replaces
the provider's own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from commands.secrets import redact

log = logging.getLogger(__name__)

PREFIX = "approval-"


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What an approved run ended with, as the approval would have recorded it."""

    approval_id: int
    approver: str
    status: str  # done | failed | unknown (bot.approvals.state.Status values)
    summary: str
    provider_status: int | None = None


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, approval_id: int) -> Path:
        return self.directory / f"{PREFIX}{approval_id}.json"

    def keep(self, answer: Answer) -> bool:
        """Write `answer` unless one is kept for that approval already; False when it could
        not be written (the caller's state is then left for the sweeper to call unknown)."""
        target = self.path(answer.approval_id)
        if target.exists():
            return True
        data = asdict(answer) | {"summary": redact(answer.summary)}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = target.with_suffix(f".tmp{os.getpid()}")
            with temporary.open("w", encoding="utf-8") as file:
                json.dump(data, file, ensure_ascii=False)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
            _sync_directory(self.directory)
        except OSError as exc:
            log.error("approval #%s: its answer could not be kept (%s)", answer.approval_id, exc)
            return False
        log.warning(
            "approval #%s: the database did not take its answer; kept in %s until it does",
            answer.approval_id,
            target,
        )
        return True

    def pending(self) -> list[Answer]:
        """Every answer kept, oldest approval first; unreadable files are named and skipped."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob(f"{PREFIX}*.json")):
            try:
                found.append(Answer(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError) as exc:
                log.error("the spooled answer %s cannot be read (%s); left in place", path, exc)
        return sorted(found, key=lambda a: a.approval_id)

    def drop(self, approval_id: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(approval_id).unlink()
        _sync_directory(self.directory)


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
