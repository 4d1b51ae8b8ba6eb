"""manifest.yml is valid for Slack and matches what the code declares and calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.billing import billing_provider
from bot.slack.check import BOT_SCOPES
from commands.registry import PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"

# Web API methods the bot may call → the bot scopes they need.
SCOPES: dict[str, tuple[str, ...]] = {
    "chat_postMessage": ("chat:write",),
    "chat_update": ("chat:write",),
    "chat_postEphemeral": ("chat:write",),
    "chat_getPermalink": (),  # a card's link in a direct message: no scope of its own
    "files_upload_v2": ("files:write",),
    "usergroups_users_list": ("usergroups:read",),
    # public channels need channels:read, private ones groups:read
    "conversations_info": ("channels:read", "groups:read"),
    "conversations_open": ("im:write",),  # a direct message (audit exports)
    "views_publish": (),  # App Home: no scope beyond the event subscription
    "views_open": (),  # needs only a trigger_id
    # Reading messages back, their metadata included (`include_all_metadata`): the history
    # scopes. `metadata.message:read` is for the message_metadata_* events, which the bot does
    # not subscribe to (https://api.slack.com/metadata/using).
    "conversations_history": ("channels:history", "groups:history"),
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text())
    return data


def test_manifest_matches_slacks_schema(manifest: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        pytest.skip("Slack's manifest schema is not beside the repository")
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(manifest), key=str)
    assert errors == []


def test_every_declared_slash_command_is_in_the_manifest(manifest: dict[str, Any]) -> None:
    declared = {c.slash for p in [*PROVIDERS, billing_provider()] for c in p.commands}
    listed = {c["command"].removeprefix("/") for c in manifest["features"]["slash_commands"]}
    assert listed == declared
    for command in manifest["features"]["slash_commands"]:
        assert command["description"] and command["usage_hint"]
        assert command["url"].endswith("/slack/events")
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_bot_scopes_are_exactly_the_ones_the_code_uses(manifest: dict[str, Any]) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    called = {m for m in SCOPES if re.search(rf"\.{m}\(", source)}
    needed = {"commands"} | {scope for m in called for scope in SCOPES[m]}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert {"chat_postMessage", "files_upload_v2"} <= called


def test_check_compares_the_token_with_the_manifests_scopes(manifest: dict[str, Any]) -> None:
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == BOT_SCOPES


def test_workflow_builder_steps_are_the_declared_ones(manifest: dict[str, Any]) -> None:
    """The `functions` section is generated from the declarations (scripts/docs.py), and the
    settings custom steps need are on (https://api.slack.com/automation/functions/custom-bolt)."""
    from bot.steps import declared_steps, functions_manifest

    steps = declared_steps(PROVIDERS)
    assert manifest["functions"] == functions_manifest(steps)
    assert {
        "voipcloud_balance",
        "voipcloud_partner_balance",
        "voipcloud_move_funds",
        "smsc_invoice_create",
        "smsc_invoice_get",
        "activeplatform_notify_closing",
        "invoicexpress_sequences",
    } <= set(manifest["functions"])
    settings = manifest["settings"]
    assert "function_executed" in settings["event_subscriptions"]["bot_events"]
    assert settings["function_runtime"] == "remote"
    assert settings["org_deploy_enabled"] is True
    balance = manifest["functions"]["voipcloud_balance"]
    inputs, outputs = balance["input_parameters"], balance["output_parameters"]
    assert inputs["requested_by"] == {
        "type": "slack#/types/user_id",
        "name": "requested_by",
        "title": "Requested by",
        "description": inputs["requested_by"]["description"],
        "is_required": True,
    }
    assert inputs["from_date"]["type"] == "slack#/types/date"
    assert inputs["account"]["is_required"] is True
    assert outputs["closing_balance"]["type"] == "string"
    move = manifest["functions"]["voipcloud_move_funds"]["input_parameters"]
    assert move["amount"]["type"] == "string"  # money is text, never a float
    for definition in manifest["functions"].values():
        for parameter in definition["output_parameters"].values():
            assert parameter["type"] == "string"
