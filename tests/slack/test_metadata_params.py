"""A reply's message metadata as the Slack Web API takes it: the `metadata` argument of
chat.postMessage and chat.update, redacted; none on what one person alone sees."""

from __future__ import annotations

from bot.slack.blocks import metadata_param
from commands.base import MessageMetadata, Reply
from commands.secrets import register_secret

ANCHOR = MessageMetadata(event_type="billing_audit_anchor", payload={"head": "9f2c", "row": "41"})


def test_slack_params_carry_the_metadata_redacted() -> None:
    register_secret("tok-9a8b7c6d5e")
    reply = Reply(
        text="anchored",
        metadata=MessageMetadata(
            event_type="billing_audit_anchor", payload={"head": "9f2c", "note": "tok-9a8b7c6d5e"}
        ),
    )
    assert metadata_param(reply) == {
        "metadata": {
            "event_type": "billing_audit_anchor",
            "event_payload": {"head": "9f2c", "note": "••••••"},
        }
    }


def test_a_reply_without_metadata_or_a_private_one_adds_no_param() -> None:
    assert metadata_param(Reply(text="hi")) == {}
    assert metadata_param(Reply(text="only you", private=True, metadata=ANCHOR)) == {}


def test_numbers_and_hex_digests_are_kept_whole() -> None:
    """A secret's characters may occur inside an anchor's hash or row number by chance; masking
    them there would unmake what `audit verify --anchors` reads back."""
    register_secret("7e57", "4417")
    digest = "0a" * 9 + "7e57" + "b1" * 20 + "cd"
    reply = Reply(
        text="anchored",
        metadata=MessageMetadata(
            event_type="billing_audit_anchor",
            payload={"seq": "144170", "hash": digest, "note": "pin 4417", "short": "7e57c0de"},
        ),
    )
    assert metadata_param(reply)["metadata"]["event_payload"] == {
        "seq": "144170",
        "hash": digest,
        "note": "pin ••••••",
        "short": "••••••c0de",  # hex, but no digest: redacted as any text
    }
