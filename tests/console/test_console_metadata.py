"""The console ignores message metadata: a reply reads the same with it or without."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from bot.console.app import Console
from bot.runtime import Runtime
from commands.base import MessageMetadata, Reply

ANCHOR = MessageMetadata(event_type="billing_audit_anchor", payload={"head": "9f2c", "row": "41"})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_console_shows_a_reply_the_same_with_or_without_metadata(
    runtime: Runtime, tmp_path: Path
) -> None:
    reply = Reply(text="*Anchored*", sections=["head 9f2c"], fields=[("Rows", "41")])
    shown = []
    for each in (reply, replace(reply, metadata=ANCHOR)):
        out = io.StringIO()
        console = Console(
            intake=runtime.dispatcher,
            providers=runtime.catalog,
            open_roles=runtime.roles.open_console,
            user="U1",
            channel="C1",
            files_dir=tmp_path / "files",
            out=out,
        )
        console.show_reply(each, "message 1")
        shown.append(out.getvalue())
    assert shown[0] == shown[1] and "Anchored" in shown[0]
    assert "billing_audit_anchor" not in shown[1]
